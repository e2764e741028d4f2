"""``inspector serve`` (being built)."""
