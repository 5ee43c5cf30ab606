"""Embedded local implementations of the ports (no cloud account needed)."""
