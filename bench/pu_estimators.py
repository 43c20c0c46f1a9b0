"""Bias and spread of the per-instance PU estimators under the adaptive engine's design.

Exact, not simulated: every terminal state (n, c) of the engine's
group-sequential design (lm_eval_ext.sampling.adaptive.StopRule) is enumerated with its
number of sampling paths, so each estimator's mean and SD at a true pass rate p
are sums over terminal states. Printed per p, relative to p:

- ``c/n``: the MLE, every sample, ignoring the stopping rule;
- ``(r-1)/(K-1)``: Haldane's estimator (``pu_rK``), samples after K ignored;
- ``rao-blackwell``: what the engine reports (lm_eval_ext.passuntil.stats.pu_sequential).

    python bench/pu_estimators.py [--r 2] [--cap 512] [--first 8]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
from scipy.special import gammaln, logsumexp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lm_eval_ext.sampling.adaptive import StopRule  # noqa: E402
from lm_eval_ext.passuntil.stats import pu_sequential  # noqa: E402


def _lcomb(a, b):
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def terminals(rule: StopRule) -> dict:
    """(n, c) -> [paths, list of (log weights, (r-1)/(K-1) values)] over every stop of the design."""
    r, states, k, out = rule.r, {(0, 0): 1}, 0, {}
    while states:
        nxt = {}
        for (n, c), N in states.items():
            m = rule.batch(k, n, c)
            for j in range(m + 1):
                n2, c2, w = n + m, c + j, N * math.comb(m, j)
                if not rule.stops(n2, c2):
                    nxt[(n2, c2)] = nxt.get((n2, c2), 0) + w
                    continue
                t = out.setdefault((n2, c2), [0, []])
                t[0] += w
                if c2 >= r:  # the r-th pass is the (r-c)-th of this batch, at position i
                    s, tail = r - c, c2 - r
                    i = np.arange(s, m - tail + 1)
                    t[1].append((_lcomb(i - 1, s - 1) + _lcomb(m - i, tail) + math.log(N), (r - 1) / (n + i - 1)))
                else:
                    t[1].append((np.array([math.log(w)]), np.array([c2 / n2])))
        states, k = nxt, k + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--r", type=int, default=2)
    ap.add_argument("--cap", type=int, default=512)
    ap.add_argument("--first", type=int, default=8)
    args = ap.parse_args()
    rule = StopRule(r=args.r, cap=args.cap, first=args.first)
    term = terminals(rule)
    n, c, logN, rk1, rk2, rb = [], [], [], [], [], []
    for (nn, cc), (N, parts) in term.items():
        lw = np.concatenate([a for a, _ in parts])
        v = np.concatenate([b for _, b in parts])
        norm = logsumexp(lw)
        n.append(nn), c.append(cc), logN.append(math.log(N))
        rk1.append(math.exp(logsumexp(lw, b=v) - norm)), rk2.append(math.exp(logsumexp(lw, b=v * v) - norm))
        rb.append(pu_sequential(nn, cc, rule))
    n, c, logN, rk1, rk2, rb = map(np.array, (n, c, logN, rk1, rk2, rb))
    print(f"design: r={rule.r}, first={rule.first}, growth={rule.growth}, cap={rule.cap}; {len(term)} terminal states")
    print(f"{'p':>8}  {'c/n bias':>9} {'rel sd':>7}  {'(r-1)/(K-1) bias':>16} {'rel sd':>7}  "
          f"{'rao-blackwell bias':>18} {'rel sd':>7}  {'sd ratio rb/rK':>14}")
    for p in (0.3, 0.1, 0.02, 0.005, 0.001):
        P = np.exp(logN + c * math.log(p) + (n - c) * math.log1p(-p))
        assert abs(P.sum() - 1) < 1e-9, P.sum()

        def moments(m1, m2):
            mean = (P * m1).sum()
            return mean / p - 1, math.sqrt(max((P * m2).sum() - mean**2, 0.0)) / p

        b_cn, s_cn = moments(c / n, (c / n) ** 2)
        b_rk, s_rk = moments(rk1, rk2)
        b_rb, s_rb = moments(rb, rb**2)
        print(f"{p:>8g}  {b_cn:>+9.3f} {s_cn:>7.3f}  {b_rk:>+16.2e} {s_rk:>7.3f}  {b_rb:>+18.2e} {s_rb:>7.3f}  "
              f"{s_rb / s_rk:>14.3f}")


if __name__ == "__main__":
    main()
