"""Screenshots of the Temporal web UI for docs/operations.md, taken with headless Chromium.

Run against a live `just up` (Debian's `chromium` package installed):

    python -m tools.screenshots

It creates a few checkouts through the HTTP API (one waiting for 3-D Secure that never comes,
one completed, one declined) and captures the UI filtered by `CheckoutStatus` into docs/img/, the
completed checkout's history, its payloads decrypted by the API's codec endpoint (the dev
server's UI is started with `--ui-codec-endpoint`; Temporal itself stores them encrypted), and the
"User Metadata" tab (the run's summary, static and current details) of the completed, the waiting
and the declined checkout.

A finished run's page settles, and `chromium --screenshot` takes it once the page is idle. A
running run's page polls its history for ever and never idles: it is taken over the DevTools
protocol instead, a fixed time after the page was opened (`websockets` comes with uvicorn).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
from websockets.asyncio.client import connect as websocket_connect

from kit.settings import Settings, get_settings
from kit.temporal import connect
from workflows.checkout.contract import WORKFLOW_TYPE

DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"
OPERATOR = "00000000-0000-4000-8000-0000000000ff"


def _token(api: httpx.Client, user_id: str, scope: str) -> dict[str, str]:
    minted = api.post("/v1/dev/tokens", json={"user_id": user_id, "scopes": [scope]})
    minted.raise_for_status()
    return {"Authorization": f"Bearer {minted.json()['access_token']}"}


def seed(api: httpx.Client) -> dict[str, str]:
    """Three checkouts: waiting, completed, failed. Returns token -> checkout id."""
    ops = _token(api, OPERATOR, "operator")
    product = api.post(
        "/v1/products",
        headers=ops,
        json={
            "seller_id": str(uuid.uuid4()),
            "title": "Screenshot shirt",
            "variants": [
                {
                    "sku": f"SHOT-{uuid.uuid4().hex[:8]}",
                    "prices": [{"currency": "USD", "amount": "25.00"}],
                }
            ],
        },
    )
    product.raise_for_status()
    variant = product.json()["variants"][0]["id"]
    api.put(f"/v1/inventory/{variant}", headers=ops, json={"total_stock": 50}).raise_for_status()
    started = {}
    for token in ("tok_no_webhook", "tok_visa", "tok_declined"):
        buyer = _token(api, str(uuid.uuid4()), "customer")
        cart = api.post("/v1/carts", headers=buyer, json={"currency": "USD"}).json()["id"]
        api.post(
            f"/v1/carts/{cart}/items", headers=buyer, json={"variant_id": variant, "quantity": 1}
        )
        checkout = api.post(
            "/v1/checkouts",
            headers={**buyer, "Idempotency-Key": uuid.uuid4().hex},
            json={
                "cart_id": cart,
                "shipping_address": {
                    "name": "Ada Lovelace",
                    "line1": "12 St James's Square",
                    "city": "London",
                    "postal_code": "SW1Y 4JH",
                    "country": "GB",
                    "phone": "+44 20 7946 0000",
                },
                "payment": {"provider": "sandbox", "token": token},
            },
        )
        checkout.raise_for_status()
        started[token] = checkout.json()["checkout_id"]
    return started


def _chromium_argv(chromium: str, profile: str) -> list[str]:
    """Headless Chromium with a fresh profile, nothing fetched but the page asked for."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
    ]


def shoot(chromium: str, url: str, target: Path) -> None:
    """One full-window screenshot of `url` once its scripts have rendered and the page idles."""
    # Chromium's helpers may still write the profile as it exits: cleanup is best effort.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        subprocess.run(
            [
                *_chromium_argv(chromium, profile),
                "--virtual-time-budget=15000",
                f"--screenshot={target}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


async def _capture(websocket_url: str, url: str, settle_s: float) -> bytes:
    """Open `url` in the page behind `websocket_url`, wait `settle_s`, return a PNG of it."""
    async with websocket_connect(websocket_url, max_size=None) as page:
        await page.send(json.dumps({"id": 1, "method": "Page.navigate", "params": {"url": url}}))
        await asyncio.sleep(settle_s)
        await page.send(json.dumps({"id": 2, "method": "Page.captureScreenshot"}))
        async for message in page:
            reply = json.loads(message)
            if reply.get("id") == 2:
                return base64.b64decode(reply["result"]["data"])
        raise RuntimeError("Chromium closed the page before the screenshot")


def shoot_live(chromium: str, url: str, target: Path, settle_s: float = 10) -> None:
    """A screenshot of a page that never idles (a running workflow's), `settle_s` after opening."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        argv = [*_chromium_argv(chromium, profile), "--remote-debugging-port=0", "about:blank"]
        browser = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            port = port_file.read_text().split()[0]
            pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            websocket_url = next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"]
            target.write_bytes(asyncio.run(_capture(websocket_url, url, settle_s)))
        finally:
            browser.terminate()
            browser.wait(timeout=30)


def run_ids(settings: Settings, workflow_ids: list[str]) -> dict[str, str]:
    """The latest run of each workflow: the web UI's tabs other than the history need it."""

    async def describe() -> dict[str, str]:
        client = await connect(settings.temporal)
        runs = {}
        for workflow_id in workflow_ids:
            description = await client.get_workflow_handle(workflow_id).describe()
            runs[workflow_id] = description.run_id
        return runs

    return asyncio.run(describe())


def main() -> int:
    """Seed, wait for the checkouts to settle, take the screenshots."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.stderr.write("install Debian's chromium package first (apt-get install chromium)\n")
        return 2
    settings = get_settings()
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.api.port}", timeout=30) as api:
        started = seed(api)
    time.sleep(5)  # let the completed and declined ones finish and visibility catch up
    DOCS.mkdir(parents=True, exist_ok=True)
    ui = settings.temporal.ui_url.rstrip("/")
    namespace = settings.temporal.namespace
    views = {
        "ui-requires-action.png": "CheckoutStatus='requires_action'",
        "ui-running.png": f"WorkflowType='{WORKFLOW_TYPE}' AND ExecutionStatus='Running'",
        "ui-failed.png": "CheckoutStatus='failed'",
    }
    for name, query in views.items():
        shoot(chromium, f"{ui}/namespaces/{namespace}/workflows?query={quote(query)}", DOCS / name)
    workflows = {token: f"checkout-{checkout_id}" for token, checkout_id in started.items()}
    runs = run_ids(settings, list(workflows.values()))

    def page(token: str, tab: str = "") -> str:
        workflow_id = workflows[token]
        return f"{ui}/namespaces/{namespace}/workflows/{workflow_id}/{runs[workflow_id]}/{tab}"

    shoot(chromium, page("tok_visa", "history"), DOCS / "ui-checkout-decoded.png")
    shoot(chromium, page("tok_visa", "user-metadata"), DOCS / "ui-checkout-metadata.png")
    shoot(chromium, page("tok_declined", "user-metadata"), DOCS / "ui-failed-metadata.png")
    shoot_live(chromium, page("tok_no_webhook", "user-metadata"), DOCS / "ui-waiting-metadata.png")
    sys.stdout.write(f"screenshots in {DOCS}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
