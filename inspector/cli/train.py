"""``inspector train`` (being built)."""
