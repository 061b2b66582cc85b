"""Benchmark scripts, each run as a file (`python benchmarks/<name>.py`). A package only so that
the tests import the pieces they check as `benchmarks.<module>` (gpt_baseline)."""
