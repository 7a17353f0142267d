-- wrk script: GET /users/{id}, ids rotating over 1..N (wrk ... -s get_user.lua -- N)
local n, i = 1000, 0
function init(args)
    n = tonumber((args[1] or ""):match("^%d+")) or 1000 -- "1000-run": the run's tag follows
    i = math.random(0, n - 1)
end
function request()
    i = (i + 1) % n
    return wrk.format("GET", "/users/" .. (i + 1))
end
