"""Example task modules a developer would write in their own app (see README)."""
