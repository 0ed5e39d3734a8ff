"""Benchmarks for sendcore: run apart from the tests."""
