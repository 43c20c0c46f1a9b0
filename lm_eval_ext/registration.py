"""Register this package's metrics, aggregations, filters and models with lm-eval.

Importing this module registers everything, once. lm-eval's built-ins are
loaded first: lm-eval fills its registries lazily on first lookup, and a
registry that already holds one plugin entry looks "loaded" to it, which would
hide every built-in metric and filter. Registration is idempotent (a second
import, or :func:`register` called again, changes nothing), and never replaces
a component of the same name that lm-eval or another package registered.

The same objects are exported as ``lm_eval.metrics``, ``lm_eval.aggregations``
and ``lm_eval.filters`` entry points (see pyproject.toml) for lm-eval releases
that discover plugins; this module is what those entry points load, so the
registration side effects (aggregation, higher_is_better) happen there too.
"""

from __future__ import annotations

import logging
import threading

import lm_eval.api.metrics  # noqa: F401  (built-in metrics and aggregations first)
import lm_eval.filters  # noqa: F401  (built-in filters first)
import lm_eval.models  # noqa: F401  (built-in model backends first; lazy, cheap)
from lm_eval.api import registry

from .passuntil import metrics
from .passuntil.filters import PassUntilExactMatchFilter, PassUntilExecuteFilter

log = logging.getLogger(__name__)
_lock = threading.Lock()
_done = False

MODELS = {"hf-shared-prefix": "lm_eval_ext.sampling.shared_prefix:SharedPrefixHFLM",
          # needs vLLM (a separate environment: bench/setup_vllm_env.sh); imported only when used
          "vllm-passuntil": "lm_eval_ext.sampling.vllm_passuntil:VLLMPassUntil"}
FILTERS = {"passuntil_execute": PassUntilExecuteFilter, "passuntil_exact_match": PassUntilExactMatchFilter}


def _add(reg, name, obj, what):
    existing = reg.get(name, None)
    if existing is None:
        reg.register(name, target=obj)
    elif existing is not obj:
        log.warning("lm_eval_ext: %s %r is already registered by someone else; keeping theirs", what, name)


def register() -> None:
    """Register all components (idempotent, thread-safe)."""
    global _done
    with _lock:
        if _done:
            return
        for name, fn in metrics.AGGREGATIONS.items():
            _add(registry.aggregation_registry, name, fn, "aggregation")
        for name, (fn, agg, higher) in metrics.METRICS.items():
            if registry.metric_registry.get(name, None) is None:
                registry.metric_registry.register(name, target=fn)
                if higher is not None:  # counts and bounds have no direction (the configs say null)
                    registry.higher_is_better_registry.register(name, target=higher)
                registry.metric_agg_registry.register(name, target=registry.aggregation_registry.get(agg))
            elif registry.metric_registry.get(name) is not fn:
                log.warning("lm_eval_ext: metric %r is already registered by someone else; keeping theirs", name)
        for name, cls in FILTERS.items():
            _add(registry.filter_registry, name, cls, "filter")
        # A lazy placeholder: torch and transformers load only if it is used.
        for name, target in MODELS.items():
            if name not in registry.model_registry:
                registry.model_registry.register(name, target=target)
        _done = True


register()

# Entry-point targets (pyproject.toml): importing this module registered them.
pu = metrics.pu
pass_at_k = metrics.pass_at_k
pu_censored = metrics.pu_censored
n_samples = metrics.n_samples
n_passed = metrics.n_passed
pu_interval = metrics.pu_interval
pu_upper = metrics.pu_upper
agg_sum = metrics.agg_sum
agg_count = metrics.agg_count
