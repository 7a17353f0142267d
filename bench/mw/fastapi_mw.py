"""The FastAPI peer of bench/mw: the seed's middleware written by hand, as its article does.
Today: the response cache, a dict with a TTL per key behind a decorator (SimpleCache), in front
of GET /expensive-query (two seconds of work), and GET /json for the baseline.
Run: uvicorn --app-dir bench/mw fastapi_mw:app --port 8001
"""

import asyncio
import time
from functools import wraps

from fastapi import FastAPI

app = FastAPI()


class SimpleCache:
    """The seed's cache: no bound, no stampede protection, expiry checked on read."""

    def __init__(self):
        self.cache = {}

    def get(self, key):
        item = self.cache.get(key)
        if item is None:
            return None
        value, expires = item
        if time.time() < expires:
            return value
        del self.cache[key]
        return None

    def set(self, key, value, ttl):
        self.cache[key] = (value, time.time() + ttl)


cache = SimpleCache()


def cached(ttl=60):
    def decorator(func):
        @wraps(func)
        async def wrapper(*args, **kwargs):
            key = f"{func.__name__}:{args}:{kwargs}"
            value = cache.get(key)
            if value is not None:
                return value
            value = await func(*args, **kwargs)
            cache.set(key, value, ttl)
            return value

        return wrapper

    return decorator


@app.get("/json")
async def json_hello():
    return {"message": "Hello, World!"}


@app.get("/expensive-query")
@cached(ttl=60)
async def expensive_query():
    await asyncio.sleep(2)
    return {"data": "expensive result", "computed_at": time.time()}
