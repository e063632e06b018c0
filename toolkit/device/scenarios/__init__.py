"""Scenarios: the sequence of one measured cell of a kind, written once for every backend
(training.py; a backend implements its small interface)."""
