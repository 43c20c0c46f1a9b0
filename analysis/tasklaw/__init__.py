"""The PassUntil task scaling law PU(N) = exp(-c N^-alpha) (Hu et al. 2023).

- :mod:`.law`: the fits (task level; ``level="instance"`` is :mod:`.hierarchical`), curvature, backtests.
- :mod:`.hierarchical`: instances partially pooled toward a typical law (random effects on log c, alpha).
- :mod:`.distribution`: the beta-binomial view across instances (pass@k, never-solved at unseen sizes).
- :mod:`.circuits`: the paper's two-circuit and multi-step alternatives.
- :mod:`.cli`: ``python -m analysis scaling`` (its PNG is drawn by :mod:`analysis.forecast.plot`).
"""

from .circuits import MODELS, CurveComparison, CurveFit, compare_curves, fit_curve  # noqa: F401
from .distribution import (  # noqa: F401
    BetaBinomialFit,
    BetaBinomialTrend,
    beta_never_solved,
    beta_pass_at_k,
    fit_beta_binomial,
    fit_beta_binomial_trend,
)
from .hierarchical import HierarchicalLawResults, fit_hierarchical_law  # noqa: F401
from .law import (  # noqa: F401
    CurvatureResult,
    TaskLawResults,
    backtest,
    classify_curvature,
    fit_task_law,
    task_pu_by_size,
)
