"""The seeds' data app, the peer of roost's data endpoints: FastAPI + async SQLAlchemy, written
the way the seeds' chapter writes it (an AsyncEngine with a pool, one AsyncSession per request
from a dependency, 404 and 409 like roost, a pool-status endpoint).

DATABASE_URL picks the engine: sqlite+aiosqlite:///PATH (default ./fastapi_bench.db) or
postgresql+asyncpg://user@host:port/db. Both get the pool roost gets by default (10 + 10
overflow; SQLAlchemy's default for aiosqlite would be NullPool, a new connection per request,
which is slower still), and SQLite the same settings as roost (WAL, synchronous=NORMAL), so the
comparison is of the servers and not of their storage settings.

Run: uvicorn fastapi_app:app --loop uvloop --http httptools --no-access-log (bench/data/run.sh).
"""

import os
import re
import time
from typing import Optional

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, constr, validator
from sqlalchemy import BigInteger, Boolean, Column, Integer, String, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import declarative_base, sessionmaker
from sqlalchemy.pool import AsyncAdaptedQueuePool

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./fastapi_bench.db")

engine = create_async_engine(
    DATABASE_URL,
    poolclass=AsyncAdaptedQueuePool,
    pool_size=10,
    max_overflow=10,
    pool_pre_ping=DATABASE_URL.startswith("postgresql"),
)
SessionLocal = sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
Base = declarative_base()

if DATABASE_URL.startswith("sqlite"):

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


class User(Base):
    __tablename__ = "users"
    id = Column(Integer, primary_key=True)
    username = Column(String(50), unique=True, nullable=False)
    email = Column(String(254), unique=True, nullable=False)
    full_name = Column(String(100))
    is_active = Column(Boolean, nullable=False, default=True)
    created_at = Column(BigInteger, nullable=False)


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserCreate(BaseModel):
    username: constr(min_length=3, max_length=50)
    email: constr(max_length=254)
    full_name: Optional[constr(max_length=100)] = None

    @validator("email")
    def email_ok(cls, v):
        if not EMAIL.match(v):
            raise ValueError("value is not a valid email address")
        return v


class UserUpdate(BaseModel):
    email: Optional[str] = None
    full_name: Optional[str] = None
    is_active: Optional[bool] = None


class UserOut(BaseModel):
    id: int
    username: str
    email: str
    full_name: Optional[str]
    is_active: bool
    created_at: int

    class Config:
        orm_mode = True


app = FastAPI(title="seed data")


@app.on_event("startup")
async def create_tables():
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def get_session():
    async with SessionLocal() as session:
        yield session


@app.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, session: AsyncSession = Depends(get_session)):
    user = User(**body.dict(), is_active=True, created_at=int(time.time() * 1000))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail="Username or email already registered")
    await session.refresh(user)
    return user


@app.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: int, session: AsyncSession = Depends(get_session)):
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user


@app.put("/users/{user_id}", response_model=UserOut)
async def update_user(user_id: int, body: UserUpdate,
                      session: AsyncSession = Depends(get_session)):
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    for k, v in body.dict(exclude_unset=True).items():
        setattr(user, k, v)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail="Email already registered")
    return user


@app.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: int, session: AsyncSession = Depends(get_session)):
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    await session.delete(user)
    await session.commit()


@app.get("/users")
async def list_users(limit: int = 20, after: int = 0,
                     session: AsyncSession = Depends(get_session)):
    rows = (await session.execute(
        select(User).where(User.id > after).order_by(User.id).limit(limit))).scalars().all()
    return [UserOut.from_orm(u) for u in rows]


@app.get("/db/pool")
async def pool_status():
    pool = engine.pool
    return {"engine": engine.dialect.name, "size": pool.size(), "checked_in": pool.checkedin(),
            "checked_out": pool.checkedout(), "overflow": pool.overflow()}


@app.get("/json")
async def json_hello():
    return {"message": "Hello, World!"}
