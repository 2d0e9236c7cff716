"""The public functions, each one readable top to bottom: `fit.fit` (the five steps in order),
`evaluate.evaluate` (a bundle scored on labelled data) and `outputs` (what a finished run leaves).

Nothing is imported here: `fit` brings Lightning (seconds), `evaluate` must not.
"""
