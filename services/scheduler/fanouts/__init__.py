"""The scheduler's fan-out driver: `state.py` folds a fan-out's events and decides (pure, no I/O),
`driver.py` follows the stream, records each decision, then requests or stops the hosts' runs."""
