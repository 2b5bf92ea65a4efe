"""Runnable measurements: `python -m benchmarks.<name>`; results/ holds their outputs."""
