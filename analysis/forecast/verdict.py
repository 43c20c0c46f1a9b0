"""One plain verdict per task, and warnings on each prediction.

With a million samples per size every real curve "rejects" the law on a
p-value (sampling noise is tiny, no real ladder is exactly a power law), so
the verdict is about size, not significance:

- **no usable trend (do not extrapolate)**: fewer than 3 resolved sizes, or
  the law's slope is not distinguishable from zero once the between-model
  scatter is counted (|slope| < 2 se), or the flat form out-predicts the law
  out of sample.
- **bends (accelerating | saturating)**: the bend is real *and* large
  enough to matter: the quadratic's curvature is more than 2 se from zero,
  the quadratic's and the law's predictions one ladder-span beyond the
  largest model differ by more than half the law's own prediction
  interval's half-width (the scatter there being the smaller of the law's
  and the bend's), and out of sample (forward chaining, on the pairs both
  could predict) the quadratic does not predict clearly worse than the law
  (by more than 2 nats: a bend that starts mid-ladder has few errors to show).  Accelerating:
  PU rises faster than the law (negative curvature of log(-log PU) in log x);
  saturating: slower.
- **follows the law** otherwise.

Warnings on a prediction: beyond the fitted range by more than the ladder
itself spans (in log x); PU predicted below what the samples could resolve
(fewer than one expected pass in the model's sampling budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Verdict", "judge", "prediction_warnings", "LABELS"]

LABELS = ("follows the law", "bends (accelerating)", "bends (saturating)", "no usable trend")


@dataclass
class Verdict:
    label: str
    reason: str
    misfit: float  # |quadratic - law| one span beyond, on the y scale
    threshold: float  # what would change the prediction

    @property
    def extrapolate(self) -> bool:
        return self.label != "no usable trend"

    def to_dict(self) -> dict:
        f = lambda v: v if (v is not None and math.isfinite(v)) else None  # noqa: E731
        return {"label": self.label, "reason": self.reason, "misfit": f(self.misfit),
                "threshold": f(self.threshold)}


def judge(res) -> Verdict:
    obs = res.obs
    n_res = int(obs.loc[~obs["censored"] & ~obs["saturated"], "log_x"].nunique())
    if "law" not in res.forms or n_res < 3:
        return Verdict("no usable trend", f"only {n_res} sizes resolved from zero/chance; a law needs 3",
                       float("nan"), float("nan"))
    law = res.forms["law"]
    b = float(law.fitted.fit.beta[1])
    se_b = float(math.sqrt(law.fitted.fit.cov_beta[1, 1]))
    if abs(b) < 2 * se_b:
        return Verdict("no usable trend",
                       f"the slope {b:.3g} is within 2 se ({se_b:.2g}) of zero given the scatter between models",
                       float("nan"), float("nan"))
    if b > 0:
        return Verdict("no usable trend", "performance falls with scale (inverse scaling): the law does not apply",
                       float("nan"), float("nan"))
    if "flat" in res.forms and res.forms["flat"].weight > law.weight and res.forms["flat"].weight > 0.5:
        return Verdict("no usable trend", "a constant predicts this ladder better than the law out of sample",
                       float("nan"), float("nan"))
    # one span beyond the largest model
    x_far = float(np.exp(obs["log_x"].max() + res.span))
    mu_l, vm_l = law.fitted.predict(np.log(x_far))
    quad = res.forms.get("quadratic")
    # The scatter in "what would matter" is the smaller of the law's and the
    # bend's: a law fitted to a bent ladder inflates its own tau with the
    # misfit, which would hide the very bend being judged.
    tau2 = min(law.fitted.tau2, quad.fitted.tau2) if quad is not None else law.fitted.tau2
    half = float(stats.norm.ppf(1 - res.level / 2) * math.sqrt(vm_l[0] + tau2 + law.calibration.extra_var(res.span)))
    threshold = 0.5 * half
    if quad is None:
        return Verdict("follows the law", "too few sizes to test for a bend; the law is the default",
                       float("nan"), threshold)
    q = float(quad.fitted.fit.beta[2])
    se_q = float(math.sqrt(quad.fitted.fit.cov_beta[2, 2]))
    mu_q, _ = quad.fitted.predict(np.log(x_far))
    misfit = float(abs(mu_q[0] - mu_l[0]))
    # out of sample, the bend must predict the ladder at least as well as the law
    # (elpd_law: the law on the quadratic's pairs when the quadratic is only compared;
    # when both are averaged their elpd are on the same pairs already)
    ql = quad.elpd_law if math.isfinite(quad.elpd_law) else law.elpd
    # A bend that starts mid-ladder is fitted out of sample on few errors from
    # origins before it (the quadratic needs 4 sizes), so the record only
    # vetoes a bend that predicts clearly worse (by more than 2 nats).
    oos = not (math.isfinite(quad.elpd) and math.isfinite(ql)) or quad.elpd >= ql - 2.0
    if abs(q) > 2 * se_q and misfit > threshold and oos:
        kind = "accelerating" if q < 0 else "saturating"
        return Verdict(f"bends ({kind})",
                       f"curvature {q:.3g} (se {se_q:.2g}) moves the prediction one span out by {misfit:.3g} "
                       f"on log(-log PU), more than {threshold:.3g}; out of sample it predicts the ladder "
                       f"no worse than the law",
                       misfit, threshold)
    if misfit <= threshold:
        why = (f"a bend would change the prediction one span out by {misfit:.3g} on log(-log PU), "
               f"less than what would matter ({threshold:.3g})")
    elif abs(q) <= 2 * se_q:
        why = f"the curvature {q:.3g} is within 2 se ({se_q:.2g}) of zero"
    else:
        why = "the bend predicts the ladder clearly worse than the law out of sample"
    return Verdict("follows the law", why, misfit, threshold)


def prediction_warnings(res, x, budget=None, pred=None) -> list[list[str]]:
    """Per requested x: the warnings that go with its prediction."""
    x = np.atleast_1d(np.asarray(x, float))
    obs = res.obs
    span = res.span
    top = float(obs["log_x"].max())
    if pred is None:
        pred = res.predict(x, budget=budget)
    if budget is None:
        budget = float(obs["budget"].iloc[-1])
    budget = np.broadcast_to(np.asarray(budget, float), x.shape)
    out = []
    for j, xv in enumerate(x):
        w = []
        d = math.log(xv) - top
        if span > 0 and d > span:
            w.append(f"extrapolates {math.exp(d):.3g}x beyond the largest model, more than the ladder spans "
                     f"({math.exp(span):.3g}x)")
        if res.verdict is not None and not res.verdict.extrapolate:
            w.append("no usable trend: do not extrapolate")
        p = float(pred["p"].iloc[j])
        if obs["kind"].iloc[0] == "counts" and np.isfinite(budget[j]) and p * budget[j] < 1:
            w.append(f"predicted PU {p:.2g} is below what {budget[j]:.0f} samples can resolve "
                     "(fewer than one expected pass)")
        out.append(w)
    return out
