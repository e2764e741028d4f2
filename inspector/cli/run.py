"""``inspector run`` (being built)."""
