"""Model library (MineCLIP, STEVE-1 prior, goal predictor, aligner).

Knows nothing of Dagster or of the training loops that use it.
"""
