"""Offline tools: evaluation, calibration, tuning, workload replay and the demo.

Nothing on the request path imports these; the CLI and the benchmarks do.
"""
