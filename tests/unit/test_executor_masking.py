"""Masking secret values in output, however the pipe splits them."""

from __future__ import annotations

import pytest

from scriptbus.executor.masking import OutputMask


def masked(values: list[str], reads: list[bytes]) -> bytes:
    mask = OutputMask(values)
    return b"".join(mask.feed(r) for r in reads) + mask.end()


@pytest.mark.parametrize("cut", range(0, 12))
def test_a_value_is_masked_wherever_the_reads_split_it(cut: int) -> None:
    text = b"pw=hunter2!\n"
    assert masked(["hunter2"], [text[:cut], text[cut:]]) == b"pw=***!\n"


def test_a_value_split_byte_by_byte_is_masked() -> None:
    text = b"a hunter2 b hunter2"
    assert masked(["hunter2"], [bytes([c]) for c in text]) == b"a *** b ***"


def test_what_only_looked_like_a_value_is_shown_at_the_end() -> None:
    mask = OutputMask(["hunter2"])
    assert mask.feed(b"x hun") == b"x "
    assert mask.end() == b"hun"
    assert masked(["hunter2"], [b"hunt", b"ing\n"]) == b"hunting\n"


def test_a_value_inside_another_is_masked_with_it_and_alone() -> None:
    assert masked(["abc", "xabcx"], [b"xabcx abc"]) == b"*** ***"


def test_non_utf8_values_and_no_values() -> None:
    assert masked(["pässwörd"], ["a pässwörd".encode()]) == b"a ***"
    assert masked([], [b"as is"]) == b"as is"
    assert masked([""], [b"as is"]) == b"as is"
