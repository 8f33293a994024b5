"""Benchmarks (see README.md); run each as a script, never as part of the tests."""
