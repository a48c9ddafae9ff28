"""The pure part of a workflow's active-run set: what its key holds and when a start gets a place."""

from __future__ import annotations

from scriptbus.events.active_runs import Holders, by_claim_time, decode_holders, encode_holders, with_claim


def test_a_start_gets_a_place_until_the_limit_and_a_repeat_keeps_its_own() -> None:
    one = with_claim({}, "a", 2, 10.0)
    assert one == {"a": 10.0}
    two = with_claim(one, "b", 2, 11.0)
    assert two == {"a": 10.0, "b": 11.0}
    assert with_claim(two, "c", 2, 12.0) is None
    assert with_claim(two, "a", 2, 13.0) == two  # the same start again: its claim time stays
    assert with_claim({"a": 1.0}, "b", 1, 2.0) is None


def test_the_key_round_trips_and_a_bare_run_id_from_before_sets_is_one_holder() -> None:
    holders: Holders = {"b": 5.5, "a": 7.0}
    assert decode_holders(encode_holders(holders)) == holders
    assert decode_holders(b"3f2a") == {"3f2a": None}
    assert decode_holders(b"") == {} and decode_holders(None) == {}
    assert by_claim_time({"x": 9.0, "y": 2.0, "z": None}) == ["z", "y", "x"]
