"""Candidate forms for y = log(-log p) against log x.

- ``law``: the PassUntil task law, a straight line (``log c - alpha log x``).
- ``quadratic``: the law with a bend (accelerating when the curvature makes
  ``p`` rise faster than the law, saturating when slower).
- ``local``: a straight line through the largest models only (the upper
  half of the ladder, at least 3 sizes): the smooth baseline that follows a
  trend which has changed since the small models.
- ``flat``: no trend (a constant): what a task that does not move with
  scale does; it keeps "no usable trend" honest instead of extrapolating
  noise.

Every form is the random-effects regression of :mod:`.regression`, so each
carries its own between-model scatter tau^2.  A fitted form predicts the
mean of y at new ``log x`` and the variance of that mean (parameter
uncertainty); a new model's y adds ``tau2`` and its own sampling noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .regression import MetaFit, fit_meta

__all__ = ["FORMS", "FittedForm", "fit_form", "min_sizes"]

#: name -> (design columns, description)
FORMS = {
    "law": "straight line in log x: PU = exp(-c x^-alpha)",
    "quadratic": "a bend: log(-log PU) quadratic in log x",
    "local": "straight line through the upper half of the ladder",
    "flat": "no trend: a constant",
}
_POWERS = {"law": 2, "quadratic": 3, "local": 2, "flat": 1}


def min_sizes(form: str) -> int:
    """Distinct resolved sizes a form needs: its parameters plus one for tau^2."""
    return _POWERS[form] + 1


@dataclass
class FittedForm:
    form: str
    fit: MetaFit
    center: float
    x_min: float  # log x range of the models it was fitted on
    x_max: float
    n_models: int

    def design(self, log_x) -> np.ndarray:
        t = np.atleast_1d(np.asarray(log_x, float)) - self.center
        return np.column_stack([t**k for k in range(_POWERS[self.form])])

    def predict(self, log_x) -> tuple[np.ndarray, np.ndarray]:
        """Mean of y at ``log_x`` and its variance (estimation only)."""
        X = self.design(log_x)
        return self.fit.mean(X), self.fit.var_mean(X)

    @property
    def tau2(self) -> float:
        return self.fit.tau2

    @property
    def params(self) -> pd.Series:
        names = ["y_at_center", "slope", "curvature"][: _POWERS[self.form]]
        return pd.Series(self.fit.beta, index=names)

    def law_params_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(log c, alpha) and their covariance for the straight-line forms
        (y = log c - alpha log x; the fit is centred: y = a + b (log x - center))."""
        J = np.array([[1.0, -self.center], [0.0, -1.0]])
        return J @ self.fit.beta, J @ self.fit.cov_beta @ J.T

    def law_params(self) -> dict:
        """log c and alpha for the straight-line forms; {} for the others."""
        if self.form not in ("law", "local"):
            return {}
        theta, _ = self.law_params_cov()
        return {"log_c": float(theta[0]), "alpha": float(theta[1])}


def fit_form(obs: pd.DataFrame, form: str) -> FittedForm:
    """Fit ``form`` to the per-model observations of :func:`.observations.observe`."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose from {list(FORMS)}")
    use = obs[~obs["saturated"]]
    if form == "local":
        xs = np.unique(use.loc[~use["censored"], "log_x"])
        k = max(min_sizes(form), int(np.ceil(len(xs) / 2)))
        if len(xs) > k:
            use = use[use["log_x"] >= xs[-k]]
    res = use[~use["censored"]]
    cen = use[use["censored"]]
    if res["log_x"].nunique() < min_sizes(form):
        raise ValueError(f"form {form!r} needs {min_sizes(form)} distinct resolved sizes, "
                         f"got {res['log_x'].nunique()}")
    center = float(res["log_x"].mean())
    ff = FittedForm(form, None, center, float(use["log_x"].min()), float(use["log_x"].max()), len(use))
    ff.fit = fit_meta(res["y"].to_numpy(), res["var_y"].to_numpy(), ff.design(res["log_x"].to_numpy()),
                      y_cens=cen["y_cens"].to_numpy(), X_cens=ff.design(cen["log_x"].to_numpy()) if len(cen) else None)
    return ff
