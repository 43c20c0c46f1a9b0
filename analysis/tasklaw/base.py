"""What every task-law fit of :mod:`analysis.tasklaw` builds on: the counts
table (its validation, and the task PU per size that the task-level fits use)
and the pieces of their results classes (``bse``/``cov_params()``, the
lack-of-fit test).  The fits (:mod:`.law`, :mod:`.hierarchical`,
:mod:`.distribution`, :mod:`.circuits`) import it; it imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from ..ingest.tables import instance_pu

from lm_eval_ext.passuntil.stats import pu_fixed

_REQUIRED = ("N", "instance", "n", "c")


def _validate(df, *, min_sizes: int = 2) -> pd.DataFrame:
    """Check the tidy counts table; return a clean copy (N float, n/c int)."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [col for col in _REQUIRED if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing required column(s) {missing}; need columns {list(_REQUIRED)} "
            "(N = parameters, instance, n = samples drawn, c = passes)"
        )
    if len(df) == 0:
        raise ValueError("no rows: the counts table is empty")
    optional = [col for col in ("pu", "run") if col in df.columns]
    out = df[list(_REQUIRED) + optional].copy()
    try:
        N = pd.to_numeric(out["N"], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError("column N (model parameters) must be numeric") from exc
    if not np.all(np.isfinite(N)) or np.any(N <= 0):
        raise ValueError("column N (model parameters) must be finite and > 0")
    if out["instance"].isna().any():
        raise ValueError("column instance has missing values")
    # pu_fixed validates whole numbers, n >= 1 and 0 <= c <= n with clear messages.
    pu_fixed(out["n"].to_numpy(), out["c"].to_numpy())
    out["N"] = N
    out["n"] = out["n"].to_numpy().astype(np.int64)
    out["c"] = out["c"].to_numpy().astype(np.int64)
    if "pu" in out.columns:
        pu = pd.to_numeric(out["pu"], errors="coerce").to_numpy(float)
        if np.any(~np.isnan(pu) & ((pu < 0) | (pu > 1))):
            raise ValueError("column pu (each instance's PU) must lie in [0, 1]")
    dup = out.duplicated(["N", "instance"] + (["run"] if "run" in out.columns else []))
    if dup.any():
        row = out[dup].iloc[0]
        raise ValueError(
            f"duplicate rows for (N={row['N']:g}, instance={row['instance']!r}): "
            "one row per (model size, instance) expected (per run, with a 'run' column); "
            "sum the counts first"
        )
    n_sizes = out["N"].nunique()
    if n_sizes < min_sizes:
        raise ValueError(
            f"need at least {min_sizes} distinct model sizes N to fit a scaling law, "
            f"got {n_sizes}"
        )
    return out.sort_values(["N", "instance"]).reset_index(drop=True)


def task_pu_by_size(df: pd.DataFrame) -> pd.DataFrame:
    """Per-size task summary: N, m (instances), runs, pu, var, n_eff.

    ``pu`` is the mean over instances of each instance's PU (column ``pu``
    where given, the sampler's own estimate, else c/n:
    :func:`analysis.ingest.instance_pu`).  ``var`` is the estimated sampling
    variance of ``pu`` (per-instance binomial variances with Jeffreys-smoothed
    p, see the module docstring); ``n_eff = p_s (1 - p_s) / var`` with ``p_s``
    the smoothed mean.

    Several runs per size (a ``run`` column: seeds): each run's task PU is
    its instances' mean, the size's ``pu`` the mean over runs, and ``var`` the
    larger of the binomial variance and the runs' spread (their sample
    variance over the number of runs), so the spread between seeds is in
    every interval built on it.
    """
    d = _validate(df, min_sizes=1)
    return _by_size(d)


def _by_size(d: pd.DataFrame) -> pd.DataFrame:
    n = d["n"].to_numpy(float)
    c = d["c"].to_numpy(float)
    p = instance_pu(d)
    pt = (c + 0.5) / (n + 1.0)
    run = d["run"].astype(str).to_numpy() if "run" in d.columns else np.zeros(len(d), dtype=object)
    g = pd.DataFrame({"N": d["N"].to_numpy(float), "run": run, "p": p, "pt": pt, "v": pt * (1 - pt) / n})
    # per run: means over its instances, and the binomial variance of its mean
    per_run = g.groupby(["N", "run"], sort=True).agg(m=("p", "size"), p=("p", "mean"), pt=("pt", "mean"),
                                                     v=("v", "sum"))
    per_run["v"] /= per_run["m"] ** 2
    by = per_run.groupby(level="N", sort=True)
    runs = by.size().to_numpy()
    pu = by["p"].mean().to_numpy()
    pu_s = by["pt"].mean().to_numpy()
    var = by["v"].sum().to_numpy() / runs**2
    spread = by["p"].var(ddof=1).fillna(0.0).to_numpy() / runs
    var = np.where(runs >= 2, np.maximum(var, spread), var)
    return pd.DataFrame(
        {
            "N": by.size().index.to_numpy(float),
            "m": by["m"].sum().to_numpy().astype(np.int64),
            "runs": runs.astype(np.int64),
            "pu": pu,
            "pu_smooth": pu_s,
            "var": var,
            "n_eff": pu_s * (1 - pu_s) / var,
        }
    )


def _check_level(alpha) -> float:
    a = float(alpha)
    if not 0 < a < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


@dataclass
class LackOfFit:
    """Goodness-of-fit test of the law against sampling noise alone."""

    statistic: float
    df: int
    pvalue: float
    method: str

    @property
    def flagged(self) -> bool:
        return bool(np.isfinite(self.pvalue) and self.pvalue < 0.05)

    def to_dict(self) -> dict:
        return {
            "statistic": _jf(self.statistic),
            "df": int(self.df),
            "pvalue": _jf(self.pvalue),
            "method": self.method,
            "flagged": self.flagged,
        }


def _jf(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


class CovParams:
    """``bse`` and ``cov_params()`` from the ``params`` Series and the
    ``cov_params_`` array of a results object (statsmodels' names)."""

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params_)), index=self.params.index)

    def cov_params(self) -> pd.DataFrame:
        idx = self.params.index
        return pd.DataFrame(self.cov_params_, index=idx, columns=idx)
