"""Claim values: no executor can ever write what a stop writes."""

import pytest

from scriptbus.events import CANCELLED_CLAIM, claim_holder, executor_claim, is_cancel


@pytest.mark.parametrize("executor_id", ["cancelled", "", "executor:cancelled", "6f1c0d6e-1b0e-4f5e-9c39-0c7c8e3f2a11"])
def test_an_executor_claim_is_never_a_cancel(executor_id: str) -> None:
    claim = executor_claim(executor_id)
    assert claim != CANCELLED_CLAIM and not is_cancel(claim)
    assert claim_holder(claim) == executor_id


def test_a_cancel_or_an_old_host_claim_has_no_holder() -> None:
    assert is_cancel(CANCELLED_CLAIM)
    assert claim_holder(CANCELLED_CLAIM) is None
    assert claim_holder(b"some-host") is None
    assert claim_holder(None) is None and not is_cancel(None)
