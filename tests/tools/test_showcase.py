"""The after-sale showcase (`python -m tools.showcase`) stays runnable: its scenarios are listed
and chosen from the command line, and its own arithmetic is right. The scenarios themselves run
against a live `just up` (README, "Trying the after-sale flows"), not in the suite."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tools.showcase.__main__ import main
from tools.showcase.orders import line_share
from tools.showcase.platform import Failed, cents, check
from tools.showcase.pricing import california_tax
from tools.showcase.scenarios import SCENARIOS


def test_every_issue_has_its_scenarios_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(SCENARIOS)
    assert {s.issue for s in SCENARIOS.values()} == {19, 20, 21}
    assert all(s.run.__doc__ for s in SCENARIOS.values())


def test_only_chooses_scenarios_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--list", "--only", "tax-down", "--only", "dispute"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "dispute",
        "tax-down",
    ]
    with pytest.raises(SystemExit) as refused:
        main(["--list", "--only", "no-such-flow"])
    assert refused.value.code == 2


def test_a_missed_check_fails_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    check(True, "held")
    with pytest.raises(Failed, match="missed"):
        check(False, "missed")
    assert capsys.readouterr().out.splitlines() == ["   ok   held", "   MISS missed"]


def test_the_expected_amounts_round_half_up() -> None:
    # 2 x 19.99 less its 5.99 share of the coupon plus 2.46 tax: one unit of two is 18.225.
    item = {"total_price": "39.98", "discount_amount": "5.99", "tax_amount": "2.46", "quantity": 2}
    assert line_share(item, 1) == Decimal("18.23")
    assert line_share(item, 2) == Decimal("36.45")
    assert california_tax(Decimal("30.10")) == Decimal("2.18")  # 2.18225 at 7.25 %
    assert cents(Decimal("52.55")) == 5255
