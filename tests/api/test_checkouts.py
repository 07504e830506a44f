"""POST /v1/checkouts: idempotent, one workflow per key under any concurrency; status; cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from contextlib import AsyncExitStack

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from api.app import create_app
from api.schemas import CheckoutOut
from tests.api.conftest import Caller
from tests.api.test_routes import assert_problem, checkout_body, new_cart, new_variant
from tests.platform import Platform
from workflows.checkout.models import CheckoutStatusBody

pytestmark = pytest.mark.timeout(120)


async def _poll(
    http: httpx.AsyncClient, who: Caller, checkout_id: str, status: str
) -> dict[str, object]:
    for _ in range(300):
        body: dict[str, object] = (
            await http.get(f"/v1/checkouts/{checkout_id}", headers=who.headers)
        ).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"checkout never became {status}: {body}")


@pytest.mark.parametrize(
    ("status", "recorded", "shown"),
    [
        ("failed", "compensating", "complete"),
        ("cancelled", "needs_attention", "complete"),  # resolved by an operator
        ("expired", "compensating", "complete"),
        ("completed", "complete", "complete"),
        ("processing", "compensating", "compensating"),  # still giving back
        ("requires_action", "awaiting_payment", "awaiting_payment"),
    ],
)
def test_an_ended_checkout_is_shown_at_step_complete(
    status: str, recorded: str, shown: str
) -> None:
    body = CheckoutStatusBody(checkout_id=uuid.uuid4(), status=status, step=recorded)

    out = CheckoutOut.of(body)

    assert (out.status, out.step) == (status, shown)


async def test_idempotency_key_rules(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, bob: Caller
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    body = checkout_body(cart_id)

    assert_problem(
        await http.post("/v1/checkouts", json=body, headers=alice.headers),
        400,
        "idempotency_key_required",
    )
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await http.post("/v1/checkouts", json=body, headers={**alice.headers, **key})
    assert first.status_code == 202
    checkout_id = first.json()["checkout_id"]
    assert first.headers["location"] == f"/v1/checkouts/{checkout_id}"
    # Same key, same body (keys in another order): the same checkout.
    again = await http.post(
        "/v1/checkouts", json=dict(reversed(list(body.items()))), headers={**alice.headers, **key}
    )
    assert again.status_code == 202
    assert again.json()["checkout_id"] == checkout_id
    other = await http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id, coupon_code="X"),
        headers={**alice.headers, **key},
    )
    assert_problem(other, 422, "idempotency_key_mismatch")
    # Someone else's cart is not found; an empty cart is refused before anything starts.
    assert_problem(
        await http.post(
            "/v1/checkouts", json=body, headers={**bob.headers, "Idempotency-Key": "k1"}
        ),
        404,
        "cart_not_found",
    )
    empty = (await http.post("/v1/carts", json={"currency": "USD"}, headers=bob.headers)).json()[
        "id"
    ]
    assert_problem(
        await http.post(
            "/v1/checkouts",
            json=checkout_body(empty),
            headers={**bob.headers, "Idempotency-Key": "k2"},
        ),
        422,
        "cart_empty",
    )
    bad = checkout_body(cart_id)
    bad["shipping_address"]["country"] = "ZZ"
    assert_problem(
        await http.post(
            "/v1/checkouts", json=bad, headers={**alice.headers, "Idempotency-Key": "k3"}
        ),
        422,
        "validation_error",
    )
    assert_problem(
        await http.post(
            "/v1/checkouts", json=body, headers={**alice.headers, "Idempotency-Key": "k" * 256}
        ),
        400,
        "idempotency_key_required",
    )


async def test_fifty_identical_requests_start_one_workflow(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    headers = {**alice.headers, "Idempotency-Key": uuid.uuid4().hex}

    answers = await asyncio.gather(
        *(
            http.post("/v1/checkouts", json=checkout_body(cart_id), headers=headers)
            for _ in range(50)
        )
    )

    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["checkout_id"] for a in answers}
    assert len(ids) == 1
    checkout_id = ids.pop()
    # Visibility is eventually consistent: wait for the run to show, then there must be one.
    for _ in range(300):
        runs = [
            w
            async for w in platform.client.list_workflows(f"WorkflowId = 'checkout-{checkout_id}'")
        ]
        if runs:
            break
        await asyncio.sleep(0.1)
    assert len(runs) == 1
    assert runs[0].status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)


async def test_a_whole_3ds_checkout_over_http(http: httpx.AsyncClient, operator: Caller) -> None:
    email = f"buyer.{uuid.uuid4().hex[:8]}@example.com"
    user = (await http.post("/v1/users", json={"email": email})).json()
    token = (
        await http.post("/v1/dev/tokens", json={"user_id": user["id"], "scopes": ["customer"]})
    ).json()
    buyer = Caller(uuid.UUID(user["id"]), {"Authorization": f"Bearer {token['access_token']}"})
    variant_id = await new_variant(http, operator, price="80.00")
    cart_id = await new_cart(http, buyer, variant_id)

    started = await http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id, token="tok_3ds"),
        headers={**buyer.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    checkout_id = started.json()["checkout_id"]
    waiting = await _poll(http, buyer, checkout_id, "requires_action")
    payment = waiting["payment"]
    assert isinstance(payment, dict)
    url = payment["next_action"]["url"]
    assert (await http.get(url)).status_code == 200  # the buyer passes 3-D Secure
    done = await _poll(http, buyer, checkout_id, "completed")

    assert done["order"]["total_amount"] == "80.00"  # type: ignore[index]
    assert done["payment"]["status"] == "captured"  # type: ignore[index]


async def test_cancel_before_capture(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, bob: Caller
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    started = await http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id, token="tok_3ds"),
        headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    checkout_id = started.json()["checkout_id"]
    await _poll(http, alice, checkout_id, "requires_action")
    # The cart is held by the running checkout.
    locked = await http.post(
        f"/v1/carts/{cart_id}/items",
        json={"variant_id": variant_id, "quantity": 1},
        headers=alice.headers,
    )
    assert_problem(locked, 409, "cart_locked")
    assert_problem(
        await http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=bob.headers),
        404,
        "checkout_not_found",
    )

    cancelled = await http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=alice.headers)
    assert cancelled.status_code == 202
    body = await _poll(http, alice, checkout_id, "cancelled")
    assert body["failure"] == {"code": "cancelled", "message": "the checkout was cancelled"}
    assert body["step"] == "complete"  # over: not the compensations it ran last
    cart = (await http.get(f"/v1/carts/{cart_id}", headers=alice.headers)).json()
    assert cart["status"] == "active"
    # Ended: nothing more to cancel (409 checkout_ended).
    assert_problem(
        await http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=alice.headers),
        409,
        "checkout_ended",
    )


async def test_checkout_starts_are_rate_limited(
    platform: Platform, alice: Caller, operator: Caller
) -> None:
    settings = platform.settings.updated(checkout={"rate_per_minute": 2})
    app = create_app(settings, temporal=platform.client)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        )
        variant_id = await new_variant(http, operator)
        carts = [await new_cart(http, alice, variant_id) for _ in range(3)]
        answers = [
            await http.post(
                "/v1/checkouts",
                json=checkout_body(c),
                headers={**alice.headers, "Idempotency-Key": c},
            )
            for c in carts
        ]
        replay = await http.post(
            "/v1/checkouts",
            json=checkout_body(carts[0]),
            headers={**alice.headers, "Idempotency-Key": carts[0]},
        )

    assert [a.status_code for a in answers[:2]] == [202, 202]
    limited = assert_problem(answers[2], 429, "rate_limited")
    assert limited["detail"]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert replay.status_code == 202  # a retry of an admitted key is never limited


# -- clients that wait (wait_s) ------------------------------------------------------------------


async def _timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    answer = await request
    return answer, time.monotonic() - began


async def test_wait_s_is_bounded(http: httpx.AsyncClient, alice: Caller) -> None:
    some = uuid.uuid4()
    for wait in ("-1", "20.5", "soon"):
        assert_problem(
            await http.get(f"/v1/checkouts/{some}?wait_s={wait}", headers=alice.headers),
            422,
            "validation_error",
        )
    assert_problem(
        await http.post(
            "/v1/checkouts?wait_s=21",
            json=checkout_body(str(some)),
            headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
        ),
        422,
        "validation_error",
    )


async def test_a_waiting_get_answers_when_the_status_leaves_processing(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    # tok_async: the payment settles a second after it is created, so the checkout stays
    # `processing` for at least that long.
    started = await http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id, token="tok_async"),
        headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    checkout_id = started.json()["checkout_id"]
    url = f"/v1/checkouts/{checkout_id}"

    held, took = await _timed(http.get(f"{url}?wait_s=0.3", headers=alice.headers))
    assert held.json()["status"] == "processing"
    assert took >= 0.3  # held for the whole wait

    waits = await asyncio.gather(
        *(_timed(http.get(f"{url}?wait_s=20", headers=alice.headers)) for _ in range(3))
    )
    for answer, took in waits:
        assert answer.status_code == 200
        assert answer.json()["status"] == "completed"
        assert answer.json()["payment"]["status"] == "captured"
        assert took < 15  # answered when the status moved, not at the end of the wait
    # What a waiting client was told is what the checkout's record says.
    assert (await http.get(url, headers=alice.headers)).json() == waits[0][0].json()

    # Ended: answered at once, and nothing is asked of Temporal any more.
    before = await _update_events(platform, checkout_id)
    again, took = await _timed(http.get(f"{url}?wait_s=20", headers=alice.headers))
    assert again.json()["status"] == "completed"
    assert took < 5
    assert await _update_events(platform, checkout_id) == before
    # Each of the four waiting clients cost at most two events (accepted, completed).
    assert 0 < before <= 2 * 4


async def test_a_waiting_post_is_idempotent(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    headers = {**alice.headers, "Idempotency-Key": uuid.uuid4().hex}

    first, took = await _timed(
        http.post("/v1/checkouts?wait_s=20", json=checkout_body(cart_id), headers=headers)
    )
    assert first.status_code == 202
    assert first.json()["status"] == "completed"
    assert took < 15
    checkout_id = first.json()["checkout_id"]
    assert first.headers["location"] == f"/v1/checkouts/{checkout_id}"

    second = await http.post(
        "/v1/checkouts?wait_s=20", json=checkout_body(cart_id), headers=headers
    )
    assert second.status_code == 202
    assert second.json() == first.json()
    runs = [
        w async for w in platform.client.list_workflows(f"WorkflowId = 'checkout-{checkout_id}'")
    ]
    assert len(runs) <= 1  # visibility may lag; never two
    history = await platform.client.get_workflow_handle(f"checkout-{checkout_id}").fetch_history()
    starts = [
        e for e in history.events if e.HasField("workflow_execution_started_event_attributes")
    ]
    assert len(starts) == 1


async def test_a_waiting_post_answers_requires_action(
    http: httpx.AsyncClient, operator: Caller, alice: Caller
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id)
    started = await http.post(
        "/v1/checkouts?wait_s=20",
        json=checkout_body(cart_id, token="tok_3ds"),
        headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert started.json()["status"] == "requires_action"
    checkout_id = started.json()["checkout_id"]
    # Not processing: a waiting GET answers at once, with the link to follow.
    waiting, took = await _timed(
        http.get(f"/v1/checkouts/{checkout_id}?wait_s=20", headers=alice.headers)
    )
    assert waiting.json()["status"] == "requires_action"
    assert took < 5
    assert (await http.get(waiting.json()["payment"]["next_action"]["url"])).status_code == 200
    # Until the approval is recorded, the status is still requires_action (answered at once);
    # from then on a waiting client is held until the checkout completes.
    seen = []
    for _ in range(100):
        done = await http.get(f"/v1/checkouts/{checkout_id}?wait_s=20", headers=alice.headers)
        seen.append(done.json()["status"])
        if seen[-1] != "requires_action":
            break
        await asyncio.sleep(0.1)
    assert seen[-1] == "completed", seen


async def _events_of(platform: Platform, checkout_id: str, kind: str) -> list[object]:
    history = await platform.client.get_workflow_handle(f"checkout-{checkout_id}").fetch_history()
    return [e for e in history.events if EventType.Name(e.event_type).endswith(kind)]


async def _update_events(platform: Platform, checkout_id: str) -> int:
    accepted = await _events_of(platform, checkout_id, "UPDATE_ACCEPTED")
    completed = await _events_of(platform, checkout_id, "UPDATE_COMPLETED")
    return len(accepted) + len(completed)
