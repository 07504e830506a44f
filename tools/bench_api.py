"""`python -m tools.bench_api`: what the HTTP API costs per request, in CPU, route by route and
layer by layer, against a bare FastAPI route measured in the same run.

Everything runs in this process, through the ASGI interface (no server, no socket, no client
library): the real application of `api.app.create_app`, its middleware and error handlers, its
auth and validation and response rendering, with the services behind the routes answered by
stand-ins (the database reads and the Temporal calls are measured by `just bench`, not here).
Each case is called in rounds, the cases interleaved so that a neighbour's load on a shared
machine falls on all of them alike; the figure is the median round's CPU time per request
(`time.process_time`). A ratio of 3.0x means three bare routes' worth of CPU.

Then each route is profiled (`cProfile`) and its time split by layer: the module each function
lives in, grouped (`starlette`, `fastapi`, `pydantic`, `jwt` with the cryptography under it,
`prometheus`, the API's own code, the rest). `--top N` lists the N most expensive functions of
each route besides.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.checkout.contract import CheckoutStatusBody, OrderSummary, PaymentSummary
from api import app as api_app
from api import errors
from api.auth import (
    KeySet,
    ProviderVerifier,
    SecretVerifier,
    VerifiedTokens,
    Verifier,
    issue_token,
)
from api.deps import Platform, RateLimiter
from api.metrics import RequestMetrics
from api.routers import checkouts as checkouts_router
from api.routers.codec import CodecCors
from api.schemas import CheckoutAccepted, CheckoutIn, CheckoutOut
from api.services import checkouts
from kit.codec import data_converter
from kit.logging import configure_logging, get_logger
from kit.settings import AuthSettings, Settings, get_settings
from tools.columns import aligned
from workflows.checkout.models import Address, CheckoutInput

REPO = Path(__file__).resolve().parents[1]
SITE_PACKAGES = "site-packages/"
OURS = "api (ours)"
OUR_PACKAGES = ("api", "kit", "activities", "workflows", "domains")
ISSUER = "https://id.bench.example"
JWKS_URL = f"{ISSUER}/jwks"
KID = "bench-1"
CHECKOUT_ID = uuid.UUID("00000000-0000-4000-8000-00000000c0de")
USER_ID = uuid.UUID("00000000-0000-4000-8000-0000000000b0")
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Row",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
BODY = {
    "cart_id": str(uuid.UUID(int=7)),
    "shipping_address": ADDRESS,
    "payment": {"provider": "stripe", "payment_method": "pm_card_visa"},
}
# The body a finished checkout answers GET /v1/checkouts/{id} with: order and payment filled.
STATUS = CheckoutStatusBody(
    checkout_id=CHECKOUT_ID,
    status="completed",
    step="done",
    order=OrderSummary(
        id=uuid.UUID(int=9), order_number="ORD-000123", total_amount=Decimal("59.9"), currency="USD"
    ),
    payment=PaymentSummary(status="captured"),
)
# What the event loop waits in: not CPU, left out of every share.
WAITS = frozenset(
    {"<method 'poll' of 'select.epoll' objects>", "<method 'select' of 'select.epoll' objects>"}
)
# Where each profiled function's time is counted, by the first matching module prefix.
LAYERS = (
    ("starlette", ("starlette",)),
    ("fastapi", ("fastapi",)),
    ("pydantic", ("pydantic",)),
    ("jwt + crypto", ("jwt", "cryptography")),
    ("temporal", ("temporalio", "google")),
    ("prometheus", ("prometheus_client",)),
    ("structlog", ("structlog",)),
    ("anyio (threads) + httpx", ("anyio", "httpx")),
    ("sqlalchemy", ("sqlalchemy",)),
    ("asyncpg", ("asyncpg",)),
    ("stripe", ("stripe",)),
)


@dataclass(frozen=True)
class Call:
    """One HTTP request as the ASGI server would hand it over."""

    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    query: bytes = b""
    body: bytes = b""
    expect: int = 200


async def send_to(app: ASGIApp, call: Call) -> int:
    """`call` answered by `app`; its status (the body is read and dropped)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": call.method,
        "scheme": "http",
        "path": call.path,
        "raw_path": call.path.encode(),
        "query_string": call.query,
        "root_path": "",
        "headers": [(b"host", b"api.bench"), *call.headers],
        "client": ("127.0.0.1", 40000),
        "server": ("api.bench", 80),
    }
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": call.body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


@dataclass
class Case:
    """A thing to time: one request through an app, or one layer's own function."""

    name: str
    run: Callable[[], Awaitable[Any]]
    samples: list[float]


def request_case(name: str, app: ASGIApp, call: Call) -> Case:
    """A case sending `call` to `app`, checking its status."""

    async def run() -> None:
        status = await send_to(app, call)
        if status != call.expect:
            raise RuntimeError(f"{name}: {call.method} {call.path} answered {status}")

    return Case(name, run, [])


async def measure(cases: list[Case], n: int, rounds: int) -> dict[str, float]:
    """CPU µs per call of each case: the median of `rounds` rounds of `n` calls, interleaved."""
    for case in cases:
        for _ in range(max(20, n // 10)):
            await case.run()
    for _ in range(rounds):
        for case in cases:
            started = time.process_time()
            for _ in range(n):
                await case.run()
            case.samples.append((time.process_time() - started) / n * 1e6)
    return {case.name: statistics.median(case.samples) for case in cases}


def wired_sync(request: Request) -> Any:
    """A dependency as a function: FastAPI calls it in a worker thread."""
    return request.app.state


async def wired_async(request: Request) -> Any:
    """The same dependency as a coroutine: called on the event loop."""
    return request.app.state


def bare_app() -> FastAPI:
    """The reference: FastAPI with one route answering a small dict; the same with one
    dependency, a function (run in a worker thread) or a coroutine; and one answering the status
    body through its response model as the real route does; nothing else."""
    bare = FastAPI()

    @bare.get("/bare")
    async def answer() -> dict[str, bool]:
        return {"ok": True}

    @bare.get("/bare-sync-dependency")
    async def with_sync(_: Annotated[Any, Depends(wired_sync)]) -> dict[str, bool]:
        return {"ok": True}

    @bare.get("/bare-async-dependency")
    async def with_async(_: Annotated[Any, Depends(wired_async)]) -> dict[str, bool]:
        return {"ok": True}

    @bare.get("/bare-model", response_model=CheckoutOut)
    async def modelled() -> CheckoutOut:
        return CheckoutOut.of(STATUS)

    return bare


def quiet_app() -> FastAPI:
    """The bare route again, FastAPI's built-in telemetry off as the API has it."""
    quiet = FastAPI(telemetry=api_app.NO_NATIVE_TELEMETRY)

    @quiet.get("/bare")
    async def answer() -> dict[str, bool]:
        return {"ok": True}

    return quiet


class Passthrough:
    """An ASGI app answering 200 with an empty body: what middleware is measured around."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def middleware_stack(settings: Settings) -> ASGIApp:
    """The API's own middleware, in the order `create_app` adds it, around `Passthrough`."""
    inner: ASGIApp = api_app.BodyLimit(Passthrough(), limit=settings.api.max_body_bytes)
    inner = CodecCors(inner, origin="http://ui.bench")
    return RequestMetrics(inner)


def stand_in_services() -> None:
    """The checkout services behind the routes answer at once, with no database or Temporal."""

    async def start(*_: Any, **__: Any) -> CheckoutAccepted:
        return CheckoutAccepted(checkout_id=CHECKOUT_ID, status="processing")

    async def status(*_: Any, **__: Any) -> CheckoutStatusBody:
        return STATUS

    checkouts.start = start
    checkouts.status = status


def provider_keys() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """An RS256 signing key and the JWKS document publishing its public half."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    public |= {"kid": KID, "alg": "RS256", "use": "sig"}
    return private, {"keys": [public]}


def provider_token(private: rsa.RSAPrivateKey, auth: AuthSettings) -> str:
    """A token of the bench's identity provider for the customer USER_ID."""
    now = int(time.time())
    claims = {
        "sub": str(USER_ID),
        "iss": ISSUER,
        "aud": auth.audience,
        "scope": f"{auth.customer_scope} openid",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": KID})


def provider_verifier(settings: Settings, jwks: dict[str, Any]) -> ProviderVerifier:
    """The OIDC verifier, its key set served by an in-process transport (fetched once, then
    cached as in production)."""
    auth = settings.auth.model_copy(update={"issuer": ISSUER, "jwks_url": JWKS_URL})
    served = httpx.MockTransport(lambda _: httpx.Response(200, json=jwks))
    http = httpx.AsyncClient(transport=served)
    return ProviderVerifier(auth, KeySet(auth, http))


def real_app(settings: Settings, verifier: Verifier) -> FastAPI:
    """The API as `create_app` wires it, its platform handed in instead of connected."""
    app = api_app.create_app(settings, temporal=None, tracing=None)
    app.state.platform = Platform(
        settings=settings,
        databases={},
        temporal=None,  # type: ignore[arg-type]
        checkouts=None,  # type: ignore[arg-type]
        checkout_limiter=RateLimiter(10**9),
        verifier=verifier,
    )
    return app


def routers_app(settings: Settings, verifier: Verifier, *, checkouts_first: bool) -> FastAPI:
    """The API's routers and error handlers alone, the checkouts' router first or last: what the
    order of the routers costs a status read (FastAPI tries the routes one by one)."""
    modules = [m for m in api_app.ROUTERS if m is not checkouts_router]
    ordered = [checkouts_router, *modules] if checkouts_first else [*modules, checkouts_router]
    app = FastAPI(telemetry=api_app.NO_NATIVE_TELEMETRY)
    errors.install(app)
    for module in ordered:
        app.include_router(module.router)
    app.state.platform = real_app(settings, verifier).state.platform
    return app


def bearer(token: str) -> tuple[bytes, bytes]:
    """The Authorization header of `token`."""
    return (b"authorization", f"Bearer {token}".encode())


def route_cases(settings: Settings) -> tuple[list[Case], dict[str, Case]]:
    """The requests timed: a bare route, then the API's routes (which are also profiled)."""
    private, jwks = provider_keys()
    hs = bearer(issue_token(settings, USER_ID, ["customer"]))
    oidc = bearer(provider_token(private, settings.auth))
    app = real_app(settings, SecretVerifier(settings))
    oidc_app = real_app(settings, provider_verifier(settings, jwks))
    body = json.dumps(BODY).encode()
    json_headers = (b"content-type", b"application/json")
    status_path = f"/v1/checkouts/{CHECKOUT_ID}"
    post = Call("POST", "/v1/checkouts", (hs, json_headers, (b"idempotency-key", b"k1")))
    bare = bare_app()
    reference = [
        request_case("bare FastAPI route (dict)", bare, Call("GET", "/bare")),
        request_case("bare route, FastAPI's telemetry off", quiet_app(), Call("GET", "/bare")),
        request_case("bare FastAPI route (CheckoutOut model)", bare, Call("GET", "/bare-model")),
        request_case("bare + a function dependency", bare, Call("GET", "/bare-sync-dependency")),
        request_case("bare + a coroutine dependency", bare, Call("GET", "/bare-async-dependency")),
    ]
    ordered = [
        request_case(
            f"routers alone, checkouts {where}: GET /v1/checkouts/{{id}}",
            routers_app(settings, app.state.platform.verifier, checkouts_first=first),
            Call("GET", status_path, (hs,)),
        )
        for where, first in (("first", True), ("last", False))
    ]
    routes = [
        request_case("GET /livez (no auth)", app, Call("GET", "/livez")),
        request_case("GET /v1/checkouts/{id}, HS token", app, Call("GET", status_path, (hs,))),
        request_case(
            "GET /v1/checkouts/{id}, OIDC token", oidc_app, Call("GET", status_path, (oidc,))
        ),
        request_case("POST /v1/checkouts, HS token", app, replace(post, body=body, expect=202)),
        request_case("GET unknown path (404 problem)", app, Call("GET", "/v1/nowhere", expect=404)),
        request_case(
            "POST /v1/checkouts, invalid body (422)",
            app,
            replace(post, body=b'{"cart_id": "x"}', expect=422),
        ),
    ]
    return reference + ordered + routes, {case.name: case for case in routes}


def layer_cases(settings: Settings) -> list[Case]:
    """Each layer's own function, called alone."""
    private, jwks = provider_keys()
    hs_token = issue_token(settings, USER_ID, ["customer"])
    oidc_token = provider_token(private, settings.auth)
    secret, provider = SecretVerifier(settings), provider_verifier(settings, jwks)
    # The same verifiers remembering no token: every request checks its token in full.
    secret_each, provider_each = SecretVerifier(settings), provider_verifier(settings, jwks)
    secret_each.verified = provider_each.verified = VerifiedTokens(size=0)
    body = json.dumps(BODY).encode()
    accepted = CheckoutAccepted(checkout_id=CHECKOUT_ID, status="processing")
    converter = data_converter(settings.temporal)
    checkout = checkout_input()
    stack, passthrough = middleware_stack(settings), Passthrough()
    call = Call("GET", f"/v1/checkouts/{CHECKOUT_ID}")

    async def rendered() -> bytes:
        return CheckoutOut.of(STATUS).model_dump_json().encode()

    async def converted() -> CheckoutOut:
        return CheckoutOut.of(STATUS)

    async def parsed() -> CheckoutIn:
        return CheckoutIn.model_validate_json(body)

    async def accepted_json() -> bytes:
        return accepted.model_dump_json().encode()

    async def encoded() -> Any:
        return await converter.encode([checkout])

    return [
        Case("auth: HS token checked in full", lambda: secret_each.verify(hs_token), []),
        Case("auth: HS token remembered", lambda: secret.verify(hs_token), []),
        Case(
            "auth: OIDC token checked in full (keys cached)",
            lambda: provider_each.verify(oidc_token),
            [],
        ),
        Case("auth: OIDC token remembered", lambda: provider.verify(oidc_token), []),
        Case("validation: CheckoutIn from the JSON body", parsed, []),
        Case("rendering: CheckoutOut.of(status body)", converted, []),
        Case("rendering: CheckoutOut.of + JSON", rendered, []),
        Case("rendering: CheckoutAccepted JSON", accepted_json, []),
        Case("middleware: an empty ASGI app alone", lambda: send_to(passthrough, call), []),
        Case("middleware: the API's three around it", lambda: send_to(stack, call), []),
        Case("temporal: CheckoutInput encoded + encrypted", encoded, []),
    ]


def logging_cases(settings: Settings) -> list[Case]:
    """One event through the platform's logging (kit.logging, rendered into a null stream): a
    structlog event of our own, and the access line uvicorn logs for every request."""
    configure_logging(settings)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())  # rendered, then dropped (truncated each call)
    ours, access = get_logger("bench"), logging.getLogger("uvicorn.access")
    streams = [
        h.stream for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
    ]

    async def event() -> None:
        ours.info("checkouts.status_read", checkout_id=str(CHECKOUT_ID), status="completed")
        for stream in streams:
            stream.seek(0)
            stream.truncate()

    async def access_line() -> None:
        access.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:40000", "GET", "/v1/checkouts/x", "1.1", 200
        )
        for stream in streams:
            stream.seek(0)
            stream.truncate()

    return [
        Case(f"logging: a structlog event ({settings.log.format})", event, []),
        Case(f"logging: uvicorn's access line ({settings.log.format})", access_line, []),
    ]


def checkout_input() -> CheckoutInput:
    """What POST /v1/checkouts hands the workflow for the bench's body."""
    return CheckoutInput(
        checkout_id=CHECKOUT_ID,
        user_id=USER_ID,
        cart_id=uuid.UUID(BODY["cart_id"]),  # type: ignore[arg-type]
        idempotency_key="k1",
        request_hash="0" * 64,
        shipping_address=Address.model_validate(ADDRESS),
        payment_provider="stripe",
        payment_token="pm_card_visa",
        payment_timeout_s=900,
        payment_recheck_s=30,
    )


@contextmanager
def profiled() -> Iterator[cProfile.Profile]:
    """A cProfile of what runs inside."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield profile
    finally:
        profile.disable()


def layer_of(filename: str) -> str:
    """The layer a profiled function's file belongs to."""
    if filename.startswith(str(REPO)):
        top = filename[len(str(REPO)) + 1 :].split("/", 1)[0]
        return OURS if top in OUR_PACKAGES else "other"
    if SITE_PACKAGES in filename:
        top = filename.split(SITE_PACKAGES, 1)[1].split("/", 1)[0].removesuffix(".py")
        return next((name for name, tops in LAYERS if top in tops), "other")
    if "/json/" in filename:
        return "json"
    return "asyncio" if "/asyncio/" in filename else "other"


def by_layer(profile: cProfile.Profile | pstats.Stats) -> dict[str, float]:
    """Each layer's share of the profiled time (own time of its functions)."""
    totals: dict[str, float] = {}
    stats = _stats(profile)
    for (filename, _, _), (_, _, own, _, _) in stats.items():
        layer = layer_of(filename)
        totals[layer] = totals.get(layer, 0.0) + own
    whole = sum(totals.values()) or 1.0
    return {layer: own / whole for layer, own in totals.items()}


def _stats(profile: cProfile.Profile | pstats.Stats) -> dict[Any, Any]:
    """The profile's functions, less the event loop's waits (a process at rest is not busy)."""
    found = profile if isinstance(profile, pstats.Stats) else pstats.Stats(profile)
    table: dict[Any, Any] = found.stats  # type: ignore[attr-defined]
    return {key: entry for key, entry in table.items() if key[2] not in WAITS}


def hottest(profile: cProfile.Profile | pstats.Stats, top: int) -> list[tuple[str, float]]:
    """The `top` functions by own time, with their share of the profiled time."""
    stats = _stats(profile)
    whole = sum(entry[2] for entry in stats.values()) or 1.0
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [
        (f"{filename.rsplit('/', 2)[-2:]!s}:{line} {name}", entry[2] / whole)
        for (filename, line, name), entry in ranked
    ]


async def profile_route(case: Case, n: int) -> cProfile.Profile:
    """`case` called `n` times under cProfile."""
    with profiled() as profile:
        for _ in range(n):
            await case.run()
    return profile


def print_table(title: str, figures: dict[str, float], reference: float) -> None:
    """One figure per line: CPU µs per call and the ratio against the bare route."""
    print(title)
    rows = [[name, f"{us:,.0f} µs", f"{us / reference:.2f}x"] for name, us in figures.items()]
    for line in aligned(rows, indent="  "):
        print(line)


async def run(n: int, rounds: int, top: int) -> dict[str, Any]:
    """Time every case, profile every route; print the tables, answer the figures."""
    settings = get_settings()
    stand_in_services()
    requests, routes = route_cases(settings)
    layers = layer_cases(settings) + logging_cases(settings)
    figures = await measure(requests + layers, n, rounds)
    reference = figures[requests[0].name]
    print(f"CPU per call, median of {rounds} rounds of {n}; ratio against {requests[0].name}")
    print_table("requests:", {c.name: figures[c.name] for c in requests}, reference)
    print_table("layers alone:", {c.name: figures[c.name] for c in layers}, reference)
    shares: dict[str, dict[str, float]] = {}
    print("profile of each route: share of its time by layer (cProfile, own time)")
    for name, case in routes.items():
        profile = await profile_route(case, n)
        shares[name] = by_layer(profile)
        split = ", ".join(
            f"{layer} {share:.0%}"
            for layer, share in sorted(shares[name].items(), key=lambda item: -item[1])
            if share >= 0.01
        )
        print(f"  {name}: {split}")
        for function, share in hottest(profile, top):
            print(f"      {share:5.1%}  {function}")
    return {"us": figures, "reference_us": reference, "layers": shares}


def print_profiles(directory: Path, top: int) -> None:
    """The layer split and hottest functions of each process profile `just bench` left in
    `directory` (BENCH_PROFILE_DIR)."""
    for path in sorted(directory.glob("*.prof")):
        stats = pstats.Stats(str(path))
        total = sum(entry[2] for entry in _stats(stats).values())
        split = ", ".join(
            f"{layer} {share:.0%}"
            for layer, share in sorted(by_layer(stats).items(), key=lambda item: -item[1])
            if share >= 0.01
        )
        print(f"{path.stem} ({total:.1f} s busy under the profiler): {split}")
        for function, share in hottest(stats, top):
            print(f"    {share:5.1%}  {function}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=1000, help="calls per round and case")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=0, help="hottest functions listed per route")
    parser.add_argument(
        "--profiles",
        type=Path,
        help="instead: summarize the process profiles `BENCH_PROFILE_DIR=DIR just bench` left",
    )
    args = parser.parse_args(argv)
    if args.profiles:
        print_profiles(args.profiles, args.top or 15)
        return
    figures = asyncio.run(run(args.n, args.rounds, args.top))
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
