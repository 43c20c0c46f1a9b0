"""Analyses over lm-eval result directories and tidy tables.

- :mod:`analysis.ingest`: v0.4/v0.3 result files, PassUntil samples, manifests, tidy tables.
- :mod:`analysis.forecast`: the forecasting core every fit uses (forward-chaining calibration
  of prediction intervals, interval scores, verdicts, ``python -m analysis backtest``).
- :mod:`analysis.tasklaw`: the PassUntil task law PU(N) = exp(-c N^-alpha) and its alternatives.
- :mod:`analysis.emergence`: emergence laws by finetuning (Snell et al. 2024).
- :mod:`analysis.seeds`: distributions across random seeds (Zhao et al. 2025).
- ``python -m analysis scaling|emergence|seeds|backtest ...``: the command line (:mod:`analysis.cli`).
"""
