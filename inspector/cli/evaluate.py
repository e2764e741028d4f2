"""``inspector evaluate`` (being built)."""
