"""The payment-provider sandbox as a real process, and webhook receivers that check signatures."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from easypost.errors.general.signature_verification_error import SignatureVerificationError
from easypost.util import validate_webhook

from devstack.processes import sandbox_process
from devstack.services.process import ManagedProcess, free_port

# Not the dev defaults: proves the sandbox takes STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET from
# its environment.
API_KEY = "sk_test_sandbox_tests_api_key_0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
WEBHOOK_SECRET = "whsec_sandbox_tests_stripe_webhook_secret"
# Not the dev defaults either: the sandbox takes EASYPOST_API_KEY and EASYPOST_WEBHOOK_SECRET from
# its environment. The secret has a character NFKD changes, as the package normalizes it.
EASYPOST_API_KEY = "EZTKsandboxtestsapikey0123456789"
CARRIER_SECRET = "sandbox-tests-easypost-secret-\ufb01"
ASYNC_DELAY_S = 0.5
FLAKY_HANG_S = 0.5
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Delivery:
    """One webhook POST the receiver accepted as genuine, and what it answered."""

    event: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event_id(self) -> str:
        """The Stripe event id (`evt_...`), what receivers deduplicate on."""
        return str(self.event["id"])

    @property
    def content_type(self) -> str:
        """The Content-Type the sandbox sent."""
        return self.headers.get("content-type", "")

    @property
    def type(self) -> str:
        """The event type."""
        return str(self.event["type"])

    @property
    def intent(self) -> dict[str, Any]:
        """The payment intent the event carries."""
        obj: dict[str, Any] = self.event["data"]["object"]
        return obj


def stripe_header(headers: dict[str, str]) -> str | None:
    """The Stripe-Signature header, whatever its case on the wire."""
    return next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)


@dataclass
class WebhookReceiver:
    """The platform's side of the webhook, in a thread: verify as stripe-python does, record,
    fail when told to."""

    secret: str
    deliveries: list[Delivery] = field(default_factory=list)
    rejected: int = 0
    _failures: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, checkout_id: str, times: int) -> None:
        """Answer 500 to the next `times` deliveries about this checkout."""
        with self._lock:
            self._failures[checkout_id] = times

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Handle one POST; the HTTP status to answer."""
        try:
            stripe.WebhookSignature.verify_header(
                body, stripe_header(headers), self.secret, tolerance=300
            )
        except stripe.SignatureVerificationError:
            with self._lock:
                self.rejected += 1
            return 400
        event = json.loads(body)
        # A refund's or a dispute's own metadata is empty: those are found by intent instead.
        checkout_id = (event["data"]["object"].get("metadata") or {}).get("checkout_id", "")
        with self._lock:
            remaining = self._failures.get(checkout_id, 0)
            if remaining:
                self._failures[checkout_id] = remaining - 1
            status = 500 if remaining else 200
            self.deliveries.append(Delivery(event, headers, body, status))
        return status

    def about(self, checkout_id: str) -> list[Delivery]:
        """Every delivery (accepted or answered 500) about one checkout."""
        with self._lock:
            return [
                d
                for d in self.deliveries
                if (d.intent.get("metadata") or {}).get("checkout_id") == checkout_id
            ]

    def about_intent(self, intent_id: str) -> list[Delivery]:
        """Every delivery about one payment intent, whatever object it carries."""
        with self._lock:
            return [
                d
                for d in self.deliveries
                if intent_id in (d.intent.get("id"), d.intent.get("payment_intent"))
            ]

    async def wait_for_intent(
        self, intent_id: str, event_type: str, *, wait_s: float = 10.0
    ) -> Delivery:
        """The first 2xx-answered delivery of `event_type` about an intent."""
        deadline = time.monotonic() + wait_s
        while True:
            found = [
                d
                for d in self.about_intent(intent_id)
                if d.type == event_type and d.answered == 200
            ]
            if found or time.monotonic() > deadline:
                assert found, f"{event_type} for {intent_id}: {self.about_intent(intent_id)}"
                return found[0]
            await asyncio.sleep(0.05)

    async def wait_for(
        self, checkout_id: str, event_type: str, *, count: int = 1, wait_s: float = 10.0
    ) -> list[Delivery]:
        """The 2xx-answered deliveries of `event_type` about a checkout, once there are `count`."""
        deadline = time.monotonic() + wait_s
        while True:
            found = [
                d for d in self.about(checkout_id) if d.type == event_type and d.answered == 200
            ]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, (
                    f"{event_type} for {checkout_id}: {self.about(checkout_id)}"
                )
                return found
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Tracking:
    """One carrier webhook POST the receiver accepted as genuine, and what it answered."""

    webhook_id: str
    event: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    answered: int
    received_at: float

    @property
    def tracker(self) -> dict[str, Any]:
        """The Tracker the event carries (`result`)."""
        obj: dict[str, Any] = self.event["result"]
        return obj

    @property
    def status(self) -> str:
        """The tracker status the event announces."""
        return str(self.tracker["status"])

    @property
    def occurred_at(self) -> datetime:
        """When the parcel reached that status (its latest tracking detail)."""
        return datetime.fromisoformat(self.tracker["tracking_details"][-1]["datetime"])

    @property
    def shipment_id(self) -> str:
        """The shipment the tracker follows."""
        return str(self.tracker["shipment_id"])


@dataclass
class CarrierReceiver:
    """The platform's side of the carrier webhook, in a thread: verify with the `easypost`
    package as the platform does, record, fail when told."""

    secret: str
    deliveries: list[Tracking] = field(default_factory=list)
    rejected: int = 0
    _failures: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, shipment_id: str, times: int) -> None:
        """Answer 500 to the next `times` deliveries about this shipment."""
        with self._lock:
            self._failures[shipment_id] = times

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Handle one POST; the HTTP status to answer."""
        signature = next((v for k, v in headers.items() if k.lower() == "x-hmac-signature"), "")
        try:
            event = validate_webhook(body, {"X-Hmac-Signature": signature}, self.secret)
        except SignatureVerificationError:
            with self._lock:
                self.rejected += 1
            return 400
        webhook_id = str(event["id"])
        shipment_id = str(event["result"]["shipment_id"])
        with self._lock:
            remaining = self._failures.get(shipment_id, 0)
            if remaining:
                self._failures[shipment_id] = remaining - 1
            status = 500 if remaining else 200
            self.deliveries.append(Tracking(webhook_id, event, headers, body, status, time.time()))
        return status

    def about(self, shipment_id: str) -> list[Tracking]:
        """Every delivery (accepted or answered 500) about one shipment, in arrival order."""
        with self._lock:
            return [d for d in self.deliveries if d.shipment_id == shipment_id]

    async def wait_for(
        self, shipment_id: str, *, count: int, wait_s: float = 10.0
    ) -> list[Tracking]:
        """The 2xx-answered deliveries about a shipment, one per event, once there are `count`."""
        deadline = time.monotonic() + wait_s
        while True:
            found: dict[str, Tracking] = {}
            for delivery in self.about(shipment_id):
                # Delivery is at least once: a restart may send an event again.
                if delivery.answered == 200:
                    found.setdefault(delivery.webhook_id, delivery)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{shipment_id}: {self.about(shipment_id)}"
                return list(found.values())
            await asyncio.sleep(0.05)


def _serve(receive: Callable[[dict[str, str], bytes], int]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receive({k: v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test output is not the place for an access log

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return server


@contextmanager
def stripe_receiver(secret: str) -> Iterator[tuple[WebhookReceiver, str]]:
    """A receiver of Stripe events verifying with `secret`, and the URL to POST them to."""
    receiver = WebhookReceiver(secret)
    server = _serve(receiver.receive)
    host, port = server.server_address[:2]
    try:
        yield receiver, f"http://{host!s}:{port}/v1/webhooks/payments/stripe"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    """A receiver and the URL the sandbox should POST to."""
    with stripe_receiver(WEBHOOK_SECRET) as receiving:
        yield receiving


@pytest.fixture(scope="module")
def carrier_receiver() -> Iterator[tuple[CarrierReceiver, str]]:
    """A receiver of tracking webhooks and the URL the sandbox should POST them to."""
    receiver = CarrierReceiver(CARRIER_SECRET)
    server = _serve(receiver.receive)
    host, port = server.server_address[:2]
    yield receiver, f"http://{host!s}:{port}/v1/webhooks/carriers/easypost"
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Psp:
    """A running sandbox."""

    url: str
    db_path: Path
    process: ManagedProcess


SandboxFactory = Callable[..., Psp]


@pytest.fixture(scope="module")
def start_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxFactory]:
    """Start sandboxes (stopped at the end of the module); keyword arguments override defaults."""
    started: list[ManagedProcess] = []

    def start(
        *, webhook_url: str, carrier_webhook_url: str = "", db_path: Path | None = None, **env: str
    ) -> Psp:
        port = free_port()
        path = db_path or tmp_path_factory.mktemp("sandbox") / "psp.sqlite"
        process = sandbox_process(
            port=port,
            db_path=path,
            webhook_url=webhook_url,
            carrier_webhook_url=carrier_webhook_url,
            log_dir=tmp_path_factory.mktemp("sandbox-logs"),
            extra_env={
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                # Empty: no rotation, whatever the environment running the tests says.
                "STRIPE_WEBHOOK_SECRET_PREVIOUS": "",
                "EASYPOST_API_KEY": EASYPOST_API_KEY,
                "EASYPOST_WEBHOOK_SECRET": CARRIER_SECRET,
                "SANDBOX_ASYNC_DELAY_S": str(ASYNC_DELAY_S),
                "SANDBOX_FLAKY_HANG_S": str(FLAKY_HANG_S),
                "SANDBOX_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
                **env,
            },
        )
        started.append(process)
        process.start()
        return Psp(f"http://127.0.0.1:{port}", path, process)

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture(scope="module")
def psp(start_sandbox: SandboxFactory, webhook_receiver: tuple[WebhookReceiver, str]) -> Psp:
    """The sandbox most tests share (they keep apart by checkout id)."""
    return start_sandbox(webhook_url=webhook_receiver[1])


@pytest.fixture
def receiver(webhook_receiver: tuple[WebhookReceiver, str]) -> WebhookReceiver:
    """The shared webhook receiver."""
    return webhook_receiver[0]


@pytest.fixture
async def client(psp: Psp) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the shared sandbox."""
    async with httpx.AsyncClient(
        base_url=psp.url, headers=AUTH, timeout=10.0, trust_env=False
    ) as http:
        yield http
