"""``inspector explain`` (being built)."""
