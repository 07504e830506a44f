"""`GET /healthz`: 200 only when every dependency and every domain queue's poller is up.
`GET /livez`: 200 whenever this process serves requests, whatever its dependencies (a liveness
probe must not restart every API pod because PostgreSQL is down)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import PlatformDep
from api.errors import problem
from kit.temporal import queues_without_pollers
from workflows.checkout.contract import TaskQueue

router = APIRouter(tags=["health"])
TIMEOUT_S = 2.0
# Every task queue the platform's workers poll: the workflows' and each domain's activities'.
QUEUES = [queue.value for queue in TaskQueue]


async def _postgres(wired: PlatformDep) -> None:
    async def ping(domain: str) -> None:
        async with wired.databases[domain].engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    await asyncio.gather(*(ping(d) for d in wired.databases))


async def _nats(wired: PlatformDep) -> None:
    async def quiet(_: Exception) -> None:
        return None  # the failure is reported by the check, not logged as a traceback

    connection = await nats.connect(
        wired.settings.nats.url,
        connect_timeout=TIMEOUT_S,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=quiet,
    )
    await connection.close()


@router.get("/healthz", responses={503: {"description": "something is missing"}})
async def healthz(wired: PlatformDep) -> JSONResponse:
    """Check PostgreSQL, Temporal, NATS and a poller on every domain task queue."""
    checks: dict[str, str] = {}
    missing: list[str] = []

    async def check(name: str, probe: Any) -> None:
        try:
            await asyncio.wait_for(probe, TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}"
            missing.append(name)

    await check("postgres", _postgres(wired))
    await check("nats", _nats(wired))
    try:
        idle = await asyncio.wait_for(queues_without_pollers(wired.temporal, QUEUES), TIMEOUT_S)
        checks["temporal"] = "ok"
        for queue in QUEUES:
            checks[f"queue:{queue}"] = "no poller" if queue in idle else "ok"
        missing += [f"queue:{queue}" for queue in idle]
    except Exception as exc:
        checks["temporal"] = f"down: {type(exc).__name__}"
        missing.append("temporal")
    if missing:
        return problem(503, "unhealthy", f"missing: {', '.join(missing)}", checks=checks)
    return JSONResponse({"status": "ok", "checks": checks})


@router.get("/livez")
async def livez() -> JSONResponse:
    """This process is alive and its event loop answers; dependencies are /healthz's business."""
    return JSONResponse({"status": "ok"})
