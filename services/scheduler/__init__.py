"""scriptbus."""
