"""Seeds N users into a server at 127.0.0.1:PORT, over one kept-alive connection: one
POST /users/batch when the server has it (roost), else N POST /users (the FastAPI app).
Usage: seed.py PORT N"""

import http.client
import json
import sys


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    users = [{"username": f"seed{i}", "email": f"seed{i}@bench.example", "full_name": f"Seed {i}"}
             for i in range(1, n + 1)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    hdr = {"Content-Type": "application/json"}
    conn.request("POST", "/users/batch", json.dumps({"users": users}), hdr)
    resp = conn.getresponse()
    resp.read()
    if resp.status == 201:
        return
    for u in users:
        conn.request("POST", "/users", json.dumps(u), hdr)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            sys.exit(f"seed: POST /users answered {resp.status}")


if __name__ == "__main__":
    main()
