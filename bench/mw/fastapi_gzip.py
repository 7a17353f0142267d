"""The FastAPI peer of bench/mw/gzip.sh: the seed's GET /large-data (10,000 dicts, serialized per
request) behind Starlette's GZipMiddleware with the seed's minimum_size=1000, and GET /json.
Run: uvicorn --app-dir bench/mw fastapi_gzip:app --port 8001
(kept apart from bench/mw/fastapi_mw.py, the cache helper's peer, so that the branches merge
without a conflict; the lead may fold it in.)
"""

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

app = FastAPI()
app.add_middleware(GZipMiddleware, minimum_size=1000)


@app.get("/json")
async def json_hello():
    return {"message": "Hello, World!"}


@app.get("/large-data")
async def large_data():
    return [{"id": i, "data": "x" * 100} for i in range(10000)]
