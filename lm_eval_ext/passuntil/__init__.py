"""PassUntil (Hu et al. 2023): its statistics and its lm-eval metrics and filters.

- :mod:`.stats`: estimators (c/n, (r-1)/(K-1), the adaptive engine's
  group-sequential estimator), exact intervals, pass@k and the task-level
  mean. numpy and scipy only; ``analysis`` builds on it.
- :mod:`.metrics`: the per-instance metrics and aggregations in lm-eval's
  calling convention (``pu``, ``pass_at_k``, ``pu_censored``, ``pu_upper``,
  ``n_samples``, ``n_passed``).
- :mod:`.filters`: the filters that turn an instance's samples into outcomes
  (``passuntil_execute``: the sandbox; ``passuntil_exact_match``).

Registration with lm-eval is :mod:`lm_eval_ext.registration`. Importing this
package imports the statistics only (no lm-eval), which it re-exports.
"""

from .stats import (  # noqa: F401
    DesignTooLarge,
    InstanceEstimate,
    SequentialDesign,
    TaskEstimate,
    clopper_pearson,
    estimate_instance,
    negbin_interval,
    pass_at_k,
    pass_at_k_all,
    pu_fixed,
    pu_paper,
    pu_sequential,
    pu_unbiased,
    samples_to_r_passes,
    task_pu,
    wilson,
)
from .stats import __all__  # noqa: F401
