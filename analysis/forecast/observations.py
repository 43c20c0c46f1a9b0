"""One observation per model: what the forecasting core fits.

A ladder is a set of models, each with a scale value ``x`` (parameters,
compute, tokens, ...) and a measured task performance.  Every fit in the
core works on ``y = log(-log p)``, the scale on which the PassUntil law
``p = exp(-c x^-alpha)`` is a straight line in ``log x``, where ``p`` is

- for PassUntil counts (columns ``instance``, ``n``, ``c``): the task PU, the
  mean over instances of ``c_i / n_i`` (the paper's task PU);
- for scores (``score``, optional ``n_items`` and ``chance``): the part above
  chance, ``p = (score - chance) / (1 - chance)``.  Multiple-choice accuracy
  starts at a chance floor the law does not have (``exp(-c x^-alpha) -> 0`` as
  ``x -> 0``), so the law is fitted to what a model adds over guessing, and
  predictions are mapped back to the score scale.

Each observation carries its own sampling variance on the y scale (delta
method: ``var(p) / (p log p)^2``), from the binomial variance of each
instance's rate (Jeffreys-smoothed so that an instance with no pass still
contributes noise) or of a score over ``n_items`` items.

A model whose ``p`` is not resolved from zero (no pass at all; a score
within two standard errors of chance or below it) is *censored*: it says
``p < p_cens`` and nothing more, and the fits use it as such (a Tobit term),
never as ``y = +inf`` and never through a smoothed value that a prior
dominates.  A model with ``p = 1`` (every sample passes) is saturated: it
is kept in the table and left out of the fits (``y = -inf`` bounds nothing
a law of this form can miss).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..ingest.tables import instance_pu

__all__ = ["observe", "y_from_p", "p_from_y", "var_p_of", "var_y_of", "to_scale", "observed_value", "detect_kind"]


def y_from_p(p):
    """``log(-log p)``: +inf at 0, -inf at 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(-np.log(np.asarray(p, float)))


def p_from_y(y):
    with np.errstate(over="ignore"):
        return np.exp(-np.exp(np.asarray(y, float)))


def _dy_dp(p):
    with np.errstate(all="ignore"):
        return 1.0 / (p * np.log(p))


def var_p_of(p, budget, *, kind: str, chance: float = 0.0):
    """Binomial sampling variance of ``p`` measured with ``budget`` samples
    (counts) or items (scores: the score ``chance + (1 - chance) p`` is the
    binomial proportion)."""
    p = np.asarray(p, float)
    if kind == "scores":
        s = chance + (1 - chance) * p
        return s * (1 - s) / budget / (1 - chance) ** 2
    return p * (1 - p) / budget


def var_y_of(var_p, p):
    """Delta method: the variance of y = log(-log p) from that of p."""
    return var_p * _dy_dp(p) ** 2


def detect_kind(df: pd.DataFrame) -> str:
    cols = set(df.columns)
    if {"instance", "n", "c"} <= cols:
        return "counts"
    if "score" in cols:
        return "scores"
    raise ValueError(
        "a ladder table needs either PassUntil counts (columns instance, n, c) or scores "
        f"(column score, optionally n_items and chance); got columns {sorted(cols)}"
    )


def observe(df: pd.DataFrame, *, x: str = "x", chance: float | None = None) -> pd.DataFrame:
    """Per-model observations of one task.

    ``df``: rows of one task, with ``model`` and the scale column ``x`` and
    either counts (``instance``, ``n``, ``c``, optional ``pu``: the
    instance's PU as its sampler estimated it) or scores (``score``, optional
    ``n_items``, ``chance``).  ``chance`` overrides the table's column (scores
    only; default 0 when neither is given).

    Returns one row per model, sorted by x: ``model, x, kind, p, var_p,
    budget, y, var_y, censored, p_cens, y_cens, saturated`` and, for scores,
    ``score, chance``.  ``budget`` is the number of samples (counts: summed
    over instances) or items behind the observation.
    """
    if "model" not in df.columns:
        raise ValueError("the table needs a 'model' column (models are identified by it, not by x)")
    if x not in df.columns:
        raise ValueError(f"the table has no scale column {x!r}")
    kind = detect_kind(df)
    rows = []
    if kind == "counts":
        for model, g in df.groupby("model", sort=False):
            n = g["n"].to_numpy(float)
            c = g["c"].to_numpy(float)
            m = len(g)
            p = float(np.mean(instance_pu(g)))  # the sampler's PU (column pu), else c/n
            pt = (c + 0.5) / (n + 1.0)
            var_p = float(np.sum(pt * (1 - pt) / n) / m**2)
            total = float(c.sum())
            # Censored when nothing passed; the bound is where one pass would be
            # expected across everything drawn.
            censored = total == 0
            p_cens = float(1.0 / np.sum(n)) if censored else np.nan
            rows.append(dict(model=model, x=float(g[x].iloc[0]), p=p, var_p=var_p,
                             budget=float(n.sum()), n_instances=m, censored=censored, p_cens=p_cens,
                             saturated=bool(np.all(c == n))))
    else:
        for model, g in df.groupby("model", sort=False):
            if len(g) != 1:
                raise ValueError(f"model {model!r} has {len(g)} score rows for one task; expected one")
            r = g.iloc[0]
            score = float(r["score"])
            ch = chance if chance is not None else (float(r["chance"]) if "chance" in g.columns
                                                    and pd.notna(r["chance"]) else 0.0)
            if not 0 <= ch < 1:
                raise ValueError(f"chance must be in [0, 1), got {ch} for model {model!r}")
            n_items = float(r["n_items"]) if "n_items" in g.columns and pd.notna(r["n_items"]) else np.nan
            p = (score - ch) / (1 - ch)
            # Sampling variance of the score; unknown n_items leaves it to the
            # between-model scatter (tau^2) to absorb.
            st = min(max(score, 0.5 / max(n_items, 1) if np.isfinite(n_items) else 1e-6), 1 - 1e-9)
            var_p = (float(var_p_of((st - ch) / (1 - ch), n_items, kind="scores", chance=ch))
                     if np.isfinite(n_items) else 0.0)
            sd = np.sqrt(var_p)
            # Not resolved from chance: censored at two standard errors above it.
            censored = bool(p <= 2 * sd) if sd > 0 else bool(p <= 0)
            p_cens = float(max(p, 0.0) + 2 * sd) if censored else np.nan
            if censored and not p_cens > 0:
                p_cens = 1e-3
            rows.append(dict(model=model, x=float(r[x]), p=p, var_p=var_p,
                             budget=n_items, n_instances=np.nan, censored=censored, p_cens=p_cens,
                             saturated=bool(p >= 1), score=score, chance=ch))
    out = pd.DataFrame(rows)
    if not np.all(np.isfinite(out["x"])) or np.any(out["x"] <= 0):
        bad = out.loc[~(np.isfinite(out["x"]) & (out["x"] > 0)), "model"].tolist()[:5]
        raise ValueError(f"the scale {x!r} must be finite and > 0 (the laws use log x); bad models: {bad}")
    out["kind"] = kind
    p = out["p"].to_numpy(float)
    ok = (~out["censored"]) & (~out["saturated"]) & (p > 0) & (p < 1)
    with np.errstate(all="ignore"):
        y = np.where(ok, y_from_p(np.clip(p, 1e-300, 1 - 1e-16)), np.nan)
        var_y = np.where(ok, var_y_of(out["var_p"].to_numpy(float), np.clip(p, 1e-300, 1 - 1e-16)), np.nan)
    out["y"] = y
    out["var_y"] = var_y
    out["y_cens"] = np.where(out["censored"], y_from_p(out["p_cens"].to_numpy(float)), np.nan)
    out["log_x"] = np.log(out["x"].to_numpy(float))
    return out.sort_values(["x", "model"]).reset_index(drop=True)


def to_scale(p, obs: pd.DataFrame):
    """Map ``p`` (the fitted quantity) back to what the user measured: the
    task PU for counts, the score for scores (``chance + (1 - chance) p``)."""
    p = np.asarray(p, float)
    if obs["kind"].iloc[0] == "scores":
        ch = float(obs["chance"].iloc[-1])
        return ch + (1 - ch) * p
    return p


def observed_value(obs: pd.DataFrame) -> np.ndarray:
    """What the user measured for each model (task PU, or the score)."""
    if obs["kind"].iloc[0] == "scores":
        return obs["score"].to_numpy(float)
    return obs["p"].to_numpy(float)
