"""Benchmarks (``cmpose bench``): speed goals are measured here, never in timed tests."""
