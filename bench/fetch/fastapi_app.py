"""The seeds' three ways to call a slow upstream from FastAPI, for bench/fetch/run.sh:
  /trap     async def + requests.get   (blocks the event loop: calls run one at a time)
  /threads  def + requests.get         (Starlette's thread pool: 40 at a time)
  /httpx    async def + one shared httpx.AsyncClient (the cure the articles give)
UPSTREAM is the base URL; every call asks it for UPSTREAM_PATH (default /sleep?ms=3000)."""

import os

import httpx
import requests
from fastapi import FastAPI

UPSTREAM = os.environ["UPSTREAM"]
PATH = os.environ.get("UPSTREAM_PATH", "/sleep?ms=3000")
app = FastAPI()
client = None


@app.on_event("startup")
async def startup():
    global client
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=10000, max_keepalive_connections=1000), timeout=120
    )


@app.get("/trap")
async def trap():
    return requests.get(UPSTREAM + PATH, timeout=120).json()


@app.get("/threads")
def threads():
    return requests.get(UPSTREAM + PATH, timeout=120).json()


@app.get("/httpx")
async def with_httpx():
    r = await client.get(UPSTREAM + PATH)
    return r.json()
