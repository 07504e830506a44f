"""A workflow id names what its workflow is about; reading it back finds only that kind's ids."""

from __future__ import annotations

import uuid

import pytest

from workflows.ids import id_after
from workflows.returns.models import return_id_of, workflow_id


def test_a_return_s_workflow_id_reads_back_as_its_return() -> None:
    return_id = uuid.uuid4()
    assert return_id_of(workflow_id(return_id)) == return_id


@pytest.mark.parametrize(
    "other",
    ["checkout-7d1a0b52-6a3e-4c49-9a55-3c1c1f3f9a10", "return-", "return-not-a-uuid", ""],
)
def test_another_kind_of_id_or_no_uuid_names_nothing(other: str) -> None:
    assert id_after("return-", other) is None
