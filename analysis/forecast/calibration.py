"""How wrong is a form on this ladder, as a function of how far it extrapolates?

Forward chaining (rolling origin): fit a form on the models up to the k-th
distinct size, predict every larger model, for every origin k the form can
be fitted at.  Each prediction error ``e`` on the y scale is compared with
what the form itself expects, ``V = var(mean) + tau^2 + v_target``
(estimation, between-model scatter, the target's sampling noise).  What
``V`` misses is model-form error, which grows with the distance of the
extrapolation:

    e ~ N(0, V + kappa^2 d^2),

``d`` the distance in log x (natural log) beyond the largest training model
(a prediction 10x beyond is less certain than one 2x beyond).  A short
ladder's extra uncertainty about the slope is already in ``V``.  On the
real ladders of ../shared/data the unexplained error per unit of ``d`` is
nearly constant across distances (0.24-0.27 for the law at d in (0.5, 1],
(1, 2] and (2, 4] over the ladders across N), while per unit of ``d/span`` it
falls by a factor 3 from short to long extrapolations: hence ``d``.  ``kappa^2`` is the posterior mode under an
inverse-gamma prior with ``nu0`` pseudo-errors at ``kappa0^2``: the prior is
the calibration measured on the real ladders in ``../shared/data`` (see
:data:`PRIOR` and ``bench/forecast_coverage.py``), so a short ladder that
cannot calibrate itself falls back to it, and a long one overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from .forms import fit_form, min_sizes

__all__ = ["PRIOR", "Calibration", "origins", "forward_chain", "calibrate"]

#: Model-form error measured by forward chaining on the real ladders of
#: ../shared/data (Pythia final checkpoints and checkpoints, Gadre et al.,
#: Mamba-2) and the lab; ``bench/forecast_coverage.py --measure-prior``
#: prints it.  kappa0 is the RMS of the unexplained error per unit of
#: log-x distance (``r`` in the errors table is that distance); nu0 how
#: many pseudo-errors it weighs.
PRIOR = {
    # mixture: the weighted forecast's.  Its pooled estimate is 0.068; 0.126 is
    # what the same ladders gave with a stronger pull of tau toward zero, and
    # is kept because the prior stands in for ladders unlike these: at 0.068
    # the simulated ladder whose slope halves just beyond the training range
    # (tests/analysis/forecast/test_forecast_sim.py) was covered 0.865 of the time, at 0.126 >= 0.9.
    "kappa0": {"law": 0.154, "quadratic": 0.079, "local": 0.129, "flat": 0.387, "mixture": 0.126},
    "nu0": 4.0,
    "source": "bench/forecast_coverage.py --measure-prior (2026-11-29): Pythia deduped 0-shot, 5-shot "
              "and checkpoints (after warmup), Gadre et al. (3 data sets, across compute and 1x-token N), "
              "Mamba-2, the lab; 127 (ladder, task) pairs, each ladder weighted equally",
}


@dataclass
class Calibration:
    kappa2: float
    n_errors: int
    source: str  # "ladder" | "prior" | "ladder+prior"
    kappa0: float
    nu0: float

    @property
    def kappa(self) -> float:
        return float(np.sqrt(self.kappa2))

    def extra_var(self, r) -> np.ndarray:
        return self.kappa2 * np.asarray(r, float) ** 2

    def to_dict(self) -> dict:
        return {"kappa": self.kappa, "n_errors": int(self.n_errors), "source": self.source,
                "prior_kappa0": self.kappa0, "prior_nu0": self.nu0}


def origins(obs: pd.DataFrame, form: str, max_origins: int) -> list[float]:
    """log-x values to cut at: every distinct size from the first where the
    form can be fitted to the second largest, thinned to ``max_origins``."""
    res = obs[~obs["censored"] & ~obs["saturated"]]
    xs = np.unique(obs["log_x"])
    ok = [u for u in xs[:-1] if res.loc[res["log_x"] <= u, "log_x"].nunique() >= min_sizes(form)]
    if len(ok) > max_origins:
        idx = np.unique(np.round(np.linspace(0, len(ok) - 1, max_origins)).astype(int))
        ok = [ok[i] for i in idx]
    return ok


def forward_chain(obs: pd.DataFrame, form: str, *, max_origins: int = 12) -> pd.DataFrame:
    """Prediction errors of ``form`` on ``obs`` by forward chaining.

    Returns one row per (origin, target model): origin (log x cut), model,
    log_x, d, span, r, mu, y, e = y - mu, V (what the form expects of the
    error's variance before model-form error).  Censored and saturated
    targets have no error on the y scale and are left out.
    """
    rows = []
    for cut in origins(obs, form, max_origins):
        train = obs[obs["log_x"] <= cut]
        test = obs[(obs["log_x"] > cut) & ~obs["censored"] & ~obs["saturated"]]
        if test.empty:
            continue
        try:
            ff = fit_form(train, form)
        except (ValueError, np.linalg.LinAlgError):
            continue
        lx = test["log_x"].to_numpy()
        mu, vm = ff.predict(lx)
        span = max(ff.x_max - ff.x_min, 1e-9)
        d = np.maximum(lx - ff.x_max, 0.0)
        for j, (_, t) in enumerate(test.iterrows()):
            rows.append(dict(origin=cut, model=t["model"], log_x=lx[j], d=d[j], span=span, r=d[j],
                             mu=mu[j], y=t["y"], e=t["y"] - mu[j], V=vm[j] + ff.tau2 + t["var_y"]))
    cols = ["origin", "model", "log_x", "d", "span", "r", "mu", "y", "e", "V"]
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({c: float for c in cols if c != "model"})


def prior_kappa0(prior: dict, form: str) -> float:
    k0 = prior["kappa0"]
    return float(k0[form] if isinstance(k0, dict) else k0)


def calibrate(errors: pd.DataFrame, prior: dict | None = None, form: str = "law") -> Calibration:
    """Posterior mode of kappa^2 from forward-chaining errors (see the module docstring)."""
    prior = PRIOR if prior is None else prior
    k0, nu0 = prior_kappa0(prior, form), float(prior["nu0"])
    e = errors["e"].to_numpy(float) if len(errors) else np.zeros(0)
    V = errors["V"].to_numpy(float) if len(errors) else np.zeros(0)
    r2 = errors["r"].to_numpy(float) ** 2 if len(errors) else np.zeros(0)
    # optional per-error weights (a bench pooling ladders of very different
    # lengths gives each ladder the same total weight)
    w = errors["w"].to_numpy(float) if "w" in errors.columns else np.ones_like(e)
    ok = np.isfinite(e) & np.isfinite(V)
    e, V, r2, w = e[ok], V[ok], r2[ok], w[ok]
    if len(e) == 0:
        return Calibration(k0**2, 0, "prior", k0, nu0)

    def neg_post(s):
        k2 = np.exp(s)
        tot = V + k2 * r2
        ll = -0.5 * np.sum(w * (np.log(tot) + e * e / tot))
        lp = -(nu0 / 2 + 1) * s - nu0 * k0**2 / (2 * k2) if nu0 > 0 else 0.0
        return -(ll + lp)

    res = optimize.minimize_scalar(neg_post, bounds=(np.log(1e-8), np.log(1e3)), method="bounded")
    return Calibration(float(np.exp(res.x)), int(len(e)), "ladder+prior" if nu0 > 0 else "ladder", k0, nu0)
