-- wrk script: POST /users with a new username and email each time (wrk ... -s post_user.lua -- TAG)
local tag, i = "w", 0
function init(args)
    tag = args[1] or "w"
end
function request()
    i = i + 1
    local body = string.format('{"username":"%s_%d","email":"%s_%d@bench.example","full_name":"Bench User"}',
                               tag, i, tag, i)
    return wrk.format("POST", "/users", {["Content-Type"] = "application/json"}, body)
end
