"""The PassUntil task scaling law PU(N) = exp(-c N^-alpha) (Hu et al. 2023).

- :mod:`.law`: the fits (task and instance level), curvature, backtests.
- :mod:`.circuits`: the paper's two-circuit and multi-step alternatives.
- :mod:`.plot`, :mod:`.cli`: the PNG and ``python -m analysis scaling``.
"""

from .circuits import MODELS, CurveComparison, CurveFit, compare_curves, fit_curve  # noqa: F401
from .law import (  # noqa: F401
    CurvatureResult,
    TaskLawResults,
    backtest,
    classify_curvature,
    fit_task_law,
    task_pu_by_size,
)
