"""Emergence laws by finetuning (Snell et al. 2024): the fit (:mod:`.law`), its plot and CLI."""

from .law import (  # noqa: F401
    EmergenceBacktest,
    EmergenceLawResults,
    backtest_emergence,
    calibrate_d0,
    fit_emergence_curve,
    fit_emergence_law,
    softplus,
)
