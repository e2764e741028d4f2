"""``inspector calibrate`` (being built)."""
