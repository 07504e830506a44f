"""Screenshots of the Temporal web UI for docs/operations.md, taken with headless Chromium.

Run against a live `just up` (Debian's `chromium` package installed):

    python -m tools.screenshots

It creates a few checkouts through the HTTP API (one waiting for 3-D Secure that never comes,
one completed, one declined) and captures the UI filtered by `CheckoutStatus` into docs/img/, and
the completed checkout's history, its payloads decrypted by the API's codec endpoint (the dev
server's UI is started with `--ui-codec-endpoint`; Temporal itself stores them encrypted).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx

from kit.settings import get_settings
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


def shoot(chromium: str, url: str, target: Path) -> None:
    """One full-window screenshot of `url` after its scripts have had time to render."""
    # Chromium's helpers may still write the profile as it exits: cleanup is best effort.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        subprocess.run(
            [
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
                "--virtual-time-budget=15000",
                f"--screenshot={target}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


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
    pages = {"ui-checkout-decoded.png": "tok_visa", "ui-checkout.png": "tok_no_webhook"}
    for name, token in pages.items():
        url = f"{ui}/namespaces/{namespace}/workflows/checkout-{started[token]}"
        try:
            shoot(chromium, url, DOCS / name)
        except subprocess.TimeoutExpired:
            # A running workflow's page keeps polling its history and may never settle.
            sys.stderr.write(f"{name}: the page did not settle in time, skipped\n")
    sys.stdout.write(f"screenshots in {DOCS}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
