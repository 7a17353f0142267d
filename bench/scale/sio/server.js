// The Socket.IO peer of bench/scale/rooms.sh: one of N processes sharing rooms through
// @socket.io/redis-adapter, written the way Socket.IO's docs scale out. Same HTTP shapes as
// roost so that one load generator drives both:
//   WS   /socket.io/?EIO=3&transport=websocket&room=R   joins room R (EIO 3 clients are put in
//        the main namespace on connect, so a plain WebSocket client needs no Socket.IO packet)
//   POST /broadcast {"room","message"}                  emits "message" to the room, cluster-wide
//   GET  /rooms/{room}/count                            {"room","online"} across every process
// Usage: node server.js PORT redis://127.0.0.1:RPORT
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const redisUrl = process.argv[3];

function json(res, status, body) {
  const s = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(s) });
  res.end(s);
}

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  let io;
  const server = http.createServer((req, res) => {
    const count = req.url.match(/^\/rooms\/([^/]+)\/count$/);
    if (req.method === "GET" && count) {
      const room = decodeURIComponent(count[1]);
      // fetchSockets asks every process through the adapter (allSockets answers this one's only)
      io.in(room).fetchSockets().then(
        (sockets) => json(res, 200, { room, online: sockets.length }),
        (err) => json(res, 503, { detail: String(err) }));
      return;
    }
    if (req.method === "POST" && req.url === "/broadcast") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        let m;
        try { m = JSON.parse(body); } catch (e) { return json(res, 422, { detail: "bad JSON" }); }
        io.to(m.room).emit("message", m.message);
        json(res, 200, { sent_to: m.room });
      });
      return;
    }
    json(res, 404, { detail: "Not Found" });
  });
  io = new Server(server, {
    allowEIO3: true,
    transports: ["websocket"],
    // the load generator answers no Engine.IO pings: keep them out of a bounded run
    pingInterval: 600000,
    pingTimeout: 600000,
    adapter: createAdapter(pub, sub),
  });
  io.on("connection", (socket) => {
    const room = String(socket.handshake.query.room || "bench");
    socket.join(room);
    socket.on("message", (text) => io.to(room).emit("message", text));
  });
  server.listen(port, "127.0.0.1");
}

main().catch((e) => { console.error(e); process.exit(1); });
