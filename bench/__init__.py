"""Benchmarks against the tools people would use instead (``make bench``)."""
