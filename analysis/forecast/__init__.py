"""The forecasting core: calibrated forecasts for a model not yet trained.

- :mod:`.observations`: one observation per model on y = log(-log p) (task PU,
  or a score above its chance floor), censored where nothing is resolved.
- :mod:`.regression`: the random-effects regression every form is (REML
  between-model scatter, Tobit terms for censored models).
- :mod:`.forms`: the law, a local line, a constant (and the quadratic bend, compared).
- :mod:`.calibration`: forward chaining and the model-form error ``kappa``,
  with the prior measured on real ladders.
- :mod:`.forecaster`: :func:`fit_forecast` -> :class:`ForecastResults`.
- :mod:`.verdict`: follows the law / bends / no usable trend; warnings.
- :mod:`.backtest`: fit the small, predict the large; interval scores.
- :mod:`.ladder`, :mod:`.plot`, :mod:`.cli`: tables in, PNG and ``python -m analysis backtest``.
- :mod:`.curves`, :mod:`.lossacc`: the score from the loss (nonlinear curves,
  the same forward chaining and calibration on the loss axis);
  :mod:`.losslaw`: the loss from the scale (Chinchilla), and the two-step chain.
"""

from .backtest import backtest_obs, backtest_table, interval_score, summarize  # noqa: F401
from .calibration import PRIOR, Calibration, calibrate, forward_chain  # noqa: F401
from .forecaster import DEFAULT_FORMS, ForecastResults, fit_forecast  # noqa: F401
from .ladder import task_observations  # noqa: F401
from .observations import observe  # noqa: F401
from .verdict import Verdict, judge  # noqa: F401
