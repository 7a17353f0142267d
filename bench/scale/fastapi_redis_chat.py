"""The seed's scale-out design, the Python peer of bench/scale/rooms.sh: the FastAPI chat room
(a ConnectionManager per worker, send_text to each socket in turn) with Redis pub/sub written by
hand so that several workers share rooms, as the seed cures `uvicorn --workers N`.

  WS   /ws/{room}/{user}      join; every text received is published to the room
  POST /broadcast             {"room","message"} -> published on Redis; every worker delivers
  GET  /rooms/{room}/count    {"room","online"} across workers (a Redis hash of counts)

Run: ROOST_REDIS_URL=redis://127.0.0.1:PORT uvicorn fastapi_redis_chat:app --loop uvloop
     --http httptools --port P (one process per node).
"""

import asyncio
import os
from typing import Dict, List

import redis.asyncio as aioredis
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

REDIS_URL = os.environ.get("ROOST_REDIS_URL", "redis://127.0.0.1:6379")
app = FastAPI(title="seed chat, scaled out with Redis pub/sub")
r = aioredis.from_url(REDIS_URL, decode_responses=True)


class ConnectionManager:
    def __init__(self) -> None:
        self.rooms: Dict[str, List[WebSocket]] = {}

    async def connect(self, websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        self.rooms.setdefault(room, []).append(websocket)
        await r.hincrby("online", room, 1)

    async def disconnect(self, websocket: WebSocket, room: str) -> None:
        members = self.rooms.get(room, [])
        if websocket in members:
            members.remove(websocket)
            await r.hincrby("online", room, -1)

    async def deliver(self, room: str, text: str) -> None:
        for ws in list(self.rooms.get(room, [])):
            try:
                await ws.send_text(text)
            except Exception:
                pass


manager = ConnectionManager()


async def listen() -> None:
    pubsub = r.pubsub()
    await pubsub.psubscribe("room:*")
    async for m in pubsub.listen():
        if m["type"] == "pmessage":
            await manager.deliver(m["channel"][5:], m["data"])


@app.on_event("startup")
async def startup() -> None:
    app.state.listener = asyncio.create_task(listen())


class Broadcast(BaseModel):
    room: str
    message: str


@app.post("/broadcast")
async def broadcast(b: Broadcast):
    await r.publish(f"room:{b.room}", b.message)
    return {"sent_to": b.room}


@app.get("/rooms/{room}/count")
async def count(room: str):
    return {"room": room, "online": int(await r.hget("online", room) or 0)}


@app.websocket("/ws/{room}/{user}")
async def chat(websocket: WebSocket, room: str, user: str):
    await manager.connect(websocket, room)
    try:
        while True:
            text = await websocket.receive_text()
            await r.publish(f"room:{room}", f"{user}: {text}")
    except WebSocketDisconnect:
        await manager.disconnect(websocket, room)
