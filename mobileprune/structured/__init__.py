"""Structured pruning: channel dependency graph, importance and physical removal (``shrink``)."""
