"""``inspector demo`` (being built)."""
