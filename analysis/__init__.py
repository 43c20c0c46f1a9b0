"""Analyses over directories of lm-eval results.

- :mod:`analysis.ingest`: v0.4 and v0.3 result files, PassUntil samples, manifests.
- :mod:`analysis.scaling`: the task scaling law PU(N) = exp(-c N^-alpha), curvature, backtests.
- ``python -m analysis scaling ...``: the command line (:mod:`analysis.cli`).
"""
