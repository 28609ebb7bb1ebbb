"""Goal-model evaluation: metrics (metrics.py), instruction sets, runs and reports."""
