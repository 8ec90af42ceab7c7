"""Benchmarks run by `gssim bench`: throughput and a ratio against a reference measured
in the same run."""
