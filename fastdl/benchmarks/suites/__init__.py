"""Benchmark suites: each module has cases(quick, batches, libs) -> list of Case."""
