"""Benchmarks: scripts that print their numbers and record them in BENCHMARKS.md."""
