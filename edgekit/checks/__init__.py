"""Checks: accuracy (numerics), latency and budgets."""
