"""Deterministic stand-ins shipped for tests, demos and benchmarks."""
