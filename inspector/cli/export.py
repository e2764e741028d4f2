"""``inspector export`` (being built)."""
