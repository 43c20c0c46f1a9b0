"""PassUntil metrics and aggregations, in lm-eval's calling convention.

A PassUntil task's filter (e.g. ``passuntil_execute``) turns the K sampled
completions of one instance into a list of K outcomes: verdict statuses
(``"passed"``, ``"failed"``, ``"timeout"``, ...) or booleans. lm-eval then calls
each metric as ``metric(references=[gold], predictions=[outcomes], **kwargs)``
once per instance, logs the per-instance values in the samples JSONL, and
aggregates them across instances for the results JSON.

Per instance (samples JSONL)        Task level (results JSON)
``pu`` = c/n                        mean over instances, with its standard error
``pass@k`` (unbiased, Chen 2021)    mean over instances, with its standard error
``pu_censored`` = 1 if c == 0       fraction of instances with no pass
``pu_upper``: exact one-sided 95%   mean over instances: a conservative upper
upper bound of the instance's PU    bound of the task PU (the number to quote
                                    when nothing passed: ``pu`` is then 0)
``n_samples`` n, ``n_passed`` c     their sums: the budget spent and the passes
                                    seen; counts, not scores, so neither has a
                                    higher-is-better direction (no arrow in
                                    lm-eval's table)

``pu_interval`` (per instance [lower, upper], aggregated as the number of
instances) is kept registered for older task configs; the shipped configs use
``pu_upper`` instead, whose task-level value means something.

The adaptive engine (:mod:`lm_eval_ext.sampling.runner`) writes the same
metrics, with ``pu`` its design's unbiased estimate
(:func:`lm_eval_ext.passuntil.stats.pu_sequential`); for a fixed budget that is c/n.

Why the task PU is a mean of per-instance c/n and not pooled sum(c)/sum(n):
pooling weights instances by how many samples they got, which under adaptive
budgets over-weights the hard ones. An instance with no pass contributes c/n =
0 to the mean (the unbiased estimate), is flagged ``pu_censored: 1``, and its
``pu_interval`` is [0, one-sided upper bound]: analyses treat it as censored
and never take the log of a per-instance zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from .stats import clopper_pearson, estimate_instance, pass_at_k as _pass_at_k


def outcome_flags(outcomes) -> list[bool]:
    """Pass (True) / not (False) per sample, from a list of statuses or booleans."""
    # ValueError, not TypeError: lm-eval retries a metric that raises
    # TypeError with other arguments, which would hide this message.
    if not isinstance(outcomes, (list, tuple)):
        raise ValueError(
            "a PassUntil metric expects each instance's filtered responses to be a list of "
            f"outcomes (statuses or booleans), got {type(outcomes).__name__}: put a filter such as "
            "`passuntil_execute` in the task's filter_list"
        )
    if not outcomes:
        raise ValueError("an instance has no samples (repeats must be >= 1)")
    flags = []
    for o in outcomes:
        if isinstance(o, str):
            flags.append(o == "passed")
        elif isinstance(o, (bool, int)):
            flags.append(bool(o))
        else:
            raise ValueError(f"unrecognised outcome {o!r}: expected a status string or a boolean")
    return flags


def outcome_counts(outcomes) -> tuple[int, int]:
    """(n, c) from a list of statuses or booleans."""
    flags = outcome_flags(outcomes)
    return len(flags), sum(flags)


def _only(predictions: Sequence) -> tuple[int, int]:
    if len(predictions) != 1:
        raise ValueError(f"expected one instance per call, got {len(predictions)}")
    return outcome_counts(predictions[0])


def pu(references=None, predictions=None, **_):
    n, c = _only(predictions)
    return c / n


def pu_censored(references=None, predictions=None, **_):
    n, c = _only(predictions)
    return int(c == 0)


def n_samples(references=None, predictions=None, **_):
    return _only(predictions)[0]


def n_passed(references=None, predictions=None, **_):
    return _only(predictions)[1]


def pu_interval(references=None, predictions=None, alpha: float = 0.05, **_):
    """[lower, upper] of the instance's PU: exact (Clopper-Pearson) at 1-alpha,
    and for a censored instance (no pass) [0, one-sided upper bound]."""
    n, c = _only(predictions)
    e = estimate_instance(n, c, alpha=alpha)
    # A list, not a dict: lm-eval would split a dict into separate metrics.
    return [e.lower, e.upper]


def pu_upper(references=None, predictions=None, alpha: float = 0.05, **_):
    """The exact (Clopper-Pearson) one-sided 1-alpha upper bound of the instance's PU."""
    return upper_bound(*_only(predictions), alpha)


def upper_bound(n: int, c: int, alpha: float = 0.05) -> float:
    """One-sided upper bound for c passes in n samples (shared with the engine)."""
    return float(clopper_pearson(n, c, alpha, alternative="less")[1])


def pass_at_k(references=None, predictions=None, k=(1,), **_):
    """pass@k for each requested k; a dict so lm-eval reports ``pass@1``, ``pass@10``, ..."""
    n, c = _only(predictions)
    ks = [k] if isinstance(k, int) else list(k)
    too_big = [x for x in ks if x > n]
    if too_big:
        raise ValueError(f"pass@k needs k <= the number of samples per instance ({n}); "
                         f"got k={too_big}: raise `repeats` or lower k")
    return {f"pass@{x}": float(_pass_at_k(n, c, x)) for x in ks}


def agg_sum(items):
    return sum(items)


def agg_count(items):
    return len(items)


#: name -> (function, default aggregation, higher_is_better; None for counts and bounds)
METRICS = {
    "pu": (pu, "mean", True),
    "pass_at_k": (pass_at_k, "mean", True),
    "pu_censored": (pu_censored, "mean", False),
    "pu_upper": (pu_upper, "mean", None),
    "n_samples": (n_samples, "sum", None),
    "n_passed": (n_passed, "sum", None),
    "pu_interval": (pu_interval, "passuntil_count", None),
}

AGGREGATIONS = {"sum": agg_sum, "passuntil_count": agg_count}
