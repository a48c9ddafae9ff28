"""`scriptbus up` keeps its embedded NATS on the same port across restarts of one data dir."""

from __future__ import annotations

from pathlib import Path

from scriptbus.up import _nats_port


def test_the_nats_port_of_a_data_dir_is_remembered(tmp_path: Path) -> None:
    record = tmp_path / "nats" / "port"
    first = _nats_port(record)
    assert record.read_text().strip() == str(first)
    # Free again (nothing listens on it here), so the next `up` takes the same port: 4222 where that is
    # free, else the one recorded, where a random one would break `nats sub -s` lines and remote executors.
    assert _nats_port(record) == first
