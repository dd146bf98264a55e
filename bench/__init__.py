"""Benchmarks: results are written to files with the command that produced them (not asserted in tests)."""
