"""Updates Temporal did not decide are sent again under the same id; nothing else is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import (
    OutboundInterceptor,
    StartWorkflowUpdateInput,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from kit import temporal
from kit.temporal import UpdateResends


class Server:
    """The next interceptor: fails the first `failures` calls, then answers."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.update_ids: list[str | None] = []

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> Any:
        self.update_ids.append(input.update_id)
        if self.failures:
            raise self.failures.pop(0)
        return "handle"


def _update(update_id: str | None) -> StartWorkflowUpdateInput:
    return StartWorkflowUpdateInput(
        id="checkout-1",
        run_id=None,
        first_execution_run_id=None,
        update_id=update_id,
        update="resolve",
        args=[],
        wait_for_stage=WorkflowUpdateStage.COMPLETED,
        headers={},
        ret_type=None,
        rpc_metadata={},
        rpc_timeout=None,
    )


def _client(server: Server) -> OutboundInterceptor:
    return UpdateResends().intercept_client(server)  # type: ignore[arg-type]


def _rpc(status: RPCStatusCode) -> RPCError:
    return RPCError("from the server", status, b"")


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(temporal, "UPDATE_RESEND_DELAYS_S", (0.0, 0.0, 0.0, 0.0))


@pytest.mark.parametrize(
    "failure",
    [
        _rpc(RPCStatusCode.FAILED_PRECONDITION),  # the workflow task carrying it failed
        _rpc(RPCStatusCode.UNAVAILABLE),
        WorkflowUpdateRPCTimeoutOrCancelledError(),  # the RPC's deadline passed
    ],
)
async def test_an_update_not_decided_is_sent_again_under_its_id(failure: BaseException) -> None:
    server = Server(failure, failure)

    answer: object = await _client(server).start_workflow_update(_update("resolve:1"))

    assert answer == "handle"

    assert server.update_ids == ["resolve:1"] * 3


async def test_an_update_without_an_id_is_named_once_for_every_attempt() -> None:
    server = Server(_rpc(RPCStatusCode.FAILED_PRECONDITION))

    await _client(server).start_workflow_update(_update(None))

    first, second = server.update_ids
    assert first is not None
    assert second == first


@pytest.mark.parametrize(
    "status", [RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.INTERNAL]
)
async def test_an_answer_that_decides_is_not_resent(status: RPCStatusCode) -> None:
    server = Server(_rpc(status))

    with pytest.raises(RPCError):
        await _client(server).start_workflow_update(_update("resolve:1"))

    assert len(server.update_ids) == 1


async def test_an_outage_outlasting_the_resends_reaches_the_caller() -> None:
    server = Server(*[_rpc(RPCStatusCode.UNAVAILABLE)] * 10)

    with pytest.raises(RPCError):
        await _client(server).start_workflow_update(_update("resolve:1"))

    assert len(server.update_ids) == len(temporal.UPDATE_RESEND_DELAYS_S) + 1


class Hanging(Server):
    """A server that never answers: a cancelled call surfaces as the SDK reports it."""

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> Any:
        self.update_ids.append(input.update_id)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as exc:
            raise WorkflowUpdateRPCTimeoutOrCancelledError() from exc
        return "handle"


async def test_a_cancelled_caller_is_not_kept_waiting() -> None:
    server = Hanging()
    call = asyncio.create_task(_client(server).start_workflow_update(_update("resolve:1")))
    await asyncio.sleep(0.05)

    call.cancel()  # the caller gives up (a client disconnected, a wait timed out)

    done, _ = await asyncio.wait({call}, timeout=2)
    if not done:  # sent again: make sure the test does not leave it behind
        call.cancel()
    assert call in done, f"the cancelled update was sent again: {server.update_ids}"
    with pytest.raises(WorkflowUpdateRPCTimeoutOrCancelledError):
        call.result()
    assert len(server.update_ids) == 1
