"""Do the forecasts hold on real ladders?  Coverage and interval scores.

For every real ladder of ``bench/real_ladders.py`` (Pythia final checkpoints
across sizes, Pythia checkpoints across compute, Pythia five-shot, Gadre et
al.'s three data sets across compute and across N, Mamba-2) and the lab's
PassUntil counts (``--lab TABLE``), and every task whose score rises above
chance (at least 3 sizes resolved from chance and a Spearman correlation of
the above-chance score with x of at least 0.5 -- a property of the data,
not of the forecaster), fit-the-small-predict-the-large by forward chaining
(``analysis.forecast.backtest``): each origin's fit predicts every larger
model.  Printed per ladder and pooled:

- coverage of the 95% intervals, ours and the baseline's (the plain
  least-squares law on y = log(-log p) with half-width 1.96 s d + 0.05);
- mean interval score on y (Gneiting-Raftery, 95%), ours and the baseline's,
  and their ratio;
- median lower/upper on the PU/score scale; point errors on y.

Honesty: the prior calibration (``analysis.forecast.calibration.PRIOR``) is
itself measured on these ladders (``--measure-prior`` prints it).  The
coverage table therefore uses, for each ladder family (pythia, gadre,
mamba2, lab), a prior measured on the *other* families only
(leave-one-family-out), unless ``--in-sample-prior``.

    python bench/forecast_coverage.py --lab lab_counts.csv [--families pythia,lab] [--measure-prior]

The lab table: columns model, N, seed, task, instance, n, c (write it from a lab
run with ``--write-lab-table LAB_OUT``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from analysis.forecast.backtest import backtest_obs, summarize  # noqa: E402
from analysis.forecast.calibration import PRIOR, calibrate, forward_chain  # noqa: E402
from analysis.forecast.forecaster import COMPARED_FORMS, DEFAULT_FORMS, fit_forecast  # noqa: E402
from analysis.forecast.observations import observe  # noqa: E402
import real_ladders  # noqa: E402

ACCEPTANCE = ("pythia_deduped_0shot", "pythia_deduped_0shot_ckpts", "lab")


def family(name: str) -> str:
    return name.split("_")[0]


def rising_tasks(ladder) -> list[tuple[str, pd.DataFrame]]:
    """(task, observations) for the tasks that rise above chance."""
    out = []
    t = ladder.table.copy()
    t["x"] = t[ladder.x].astype(float)
    t = t[np.isfinite(t["x"]) & (t["x"] > 0)]
    for task, g in t.groupby("task", sort=True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obs = observe(g)
        except ValueError:
            continue
        res = obs[~obs["censored"] & ~obs["saturated"]]
        if res["log_x"].nunique() < 3 or len(obs) < 4:
            continue
        rho = stats.spearmanr(obs["log_x"], obs["p"]).statistic
        if not np.isfinite(rho) or rho < 0.5:
            continue
        out.append((task, obs))
    return out


def fc_errors(items, forms) -> pd.DataFrame:
    """Forward-chaining errors of every form, and of the weighted forecast
    ("mixture"), on every (ladder, task); each ladder gets the same total
    weight."""
    frames = []
    for lad, task, obs in items:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit_forecast(obs, forms=forms, max_origins=8)
        for form in tuple(forms) + tuple(f for f in COMPARED_FORMS if f not in forms):
            e = res.forms[form].errors if form in res.forms else forward_chain(obs, form, max_origins=8)
            if len(e):
                frames.append(e.assign(ladder=lad, task=task, form=form))
        if len(res.errors):
            frames.append(res.errors.assign(ladder=lad, task=task, form="mixture"))
    e = pd.concat(frames, ignore_index=True)
    n = e.groupby(["ladder", "form"])["e"].transform("size")
    e["w"] = 1.0 / n
    return e


def measure_prior(errors: pd.DataFrame, exclude_family: str | None = None) -> dict:
    e = errors if exclude_family is None else errors[errors["ladder"].map(family) != exclude_family]
    k0 = {}
    for form in PRIOR["kappa0"]:
        ef = e[e["form"] == form]
        if ef.empty:
            k0[form] = PRIOR["kappa0"][form]
            continue
        w = ef["w"] * (len(ef["ladder"].unique()) * 25.0 / max(ef["w"].sum(), 1e-9))  # ~25 errors a ladder
        c = calibrate(ef.assign(w=w), {"kappa0": 0.3, "nu0": 0.0}, form)
        k0[form] = round(c.kappa, 3)
    return {"kappa0": k0, "nu0": PRIOR["nu0"],
            "source": "measured on " + ", ".join(sorted(e["ladder"].unique()))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--lab", help="the lab's counts table (CSV: model, N, seed, task, instance, n, c)")
    ap.add_argument("--write-lab-table", metavar="LAB_OUT", help="write LAB_OUT's counts to --lab and exit")
    ap.add_argument("--families", default="pythia,gadre,mamba2,lab", help="comma-separated ladder families")
    ap.add_argument("--skip", default="", help="regular expression: ladders to leave out")
    ap.add_argument("--forms", default=",".join(DEFAULT_FORMS), help="candidate forms of the forecast")
    ap.add_argument("--max_origins", type=int, default=6)
    ap.add_argument("--tau0", type=float, help="mode of the prior on tau (default: the shipped one)")
    ap.add_argument("--measure-prior", action="store_true", help="print the prior measured on all ladders")
    ap.add_argument("--in-sample-prior", action="store_true", help="use the shipped PRIOR everywhere")
    ap.add_argument("--out", help="write every backtest row here (CSV)")
    args = ap.parse_args(argv)
    if args.write_lab_table:
        from analysis.ingest import attach_sizes, read_instances, read_manifest

        lab = Path(args.write_lab_table)
        df = attach_sizes(read_instances(lab / "eval"), read_manifest(lab / "models" / "manifest.csv"))
        df["model"] = df["model"].map(lambda m: Path(str(m)).name)
        df[["model", "N", "seed", "tokens", "task", "instance", "n", "c"]].to_csv(args.lab, index=False)
        print(f"wrote {args.lab}")
        return 0
    if args.tau0 is not None:
        from analysis.forecast import regression

        regression.TAU_PRIOR_MODE = args.tau0
    fams = set(args.families.split(","))
    t0 = time.time()
    lads = [lad for lad in real_ladders.ladders(args.data, lab_table=args.lab) if family(lad.name) in fams
            and not (args.skip and re.search(args.skip, lad.name))]
    forms = tuple(args.forms.split(","))
    items = [(lad.name, task, obs) for lad in lads for task, obs in rising_tasks(lad)]
    print(f"{len(items)} (ladder, task) pairs rise above chance in {len(lads)} ladders ({time.time() - t0:.0f} s)")
    errors = fc_errors(items, forms)
    if args.measure_prior:
        print("prior measured on every ladder:", measure_prior(errors))
    rows = []
    priors = {}
    for lad, task, obs in items:
        fam = family(lad)
        if args.in_sample_prior:
            prior = PRIOR
        else:
            if fam not in priors:
                priors[fam] = measure_prior(errors, exclude_family=fam)
            prior = priors[fam]
        r, _ = backtest_obs(obs, max_origins=args.max_origins, prior=prior, forms=forms)
        if len(r):
            rows.append(r.assign(ladder=lad, task=task))
    for fam, p in priors.items():
        print(f"prior for {fam} (other families only): {p['kappa0']}")
    R = pd.concat(rows, ignore_index=True)
    if args.out:
        R.drop(columns=["warnings"]).to_csv(args.out, index=False)

    def line(name, g):
        s = summarize(g)
        if not s.get("n"):
            return
        ratio = s["score"] / s["base_score"]
        q = g[np.isfinite(g["y"])]
        print(f"{name:<34} {s['n']:5d} {s['coverage']:6.3f} {s['base_coverage']:6.3f} {s['score']:8.3f} "
              f"{s['base_score']:9.3f} {ratio:6.3f} {s['mae_y']:6.3f} {s['base_mae_y']:6.3f} "
              f"{q['lower'].median():7.3f} {q['upper'].median():7.3f}")

    print(f"\n{'ladder':<34} {'n':>5} {'cover':>6} {'b.cov':>6} {'score':>8} {'b.score':>9} {'ratio':>6} "
          f"{'mae_y':>6} {'b.mae':>6} {'med.lo':>7} {'med.up':>7}")
    for lad, g in R.groupby("ladder", sort=False):
        line(lad, g)
    acc = R[R["ladder"].isin(ACCEPTANCE)]
    print("-" * 100)
    line("POOLED acceptance (pythia+ckpts+lab)", acc)
    # each (ladder, task) weighted equally: the checkpoint ladders have ~100x the rows
    eq = acc.groupby(["ladder", "task"]).apply(lambda g: pd.Series(summarize(g))).reset_index()
    eq = eq[eq["n"] > 0]
    print(f"{'  per-task mean (equal weights)':<34} {len(eq):5d} {eq['coverage'].mean():6.3f} "
          f"{eq['base_coverage'].mean():6.3f} {eq['score'].mean():8.3f} {eq['base_score'].mean():9.3f} "
          f"{eq['score'].mean() / eq['base_score'].mean():6.3f}")
    line("POOLED all ladders", R)
    by_d = R[np.isfinite(R["y"])].assign(dbin=pd.cut(R["d"], [-0.01, 0.5, 1, 2, 4, 100]))
    print("\ncoverage by distance d (log x beyond the training range), all ladders:")
    print(by_d.groupby("dbin", observed=True).agg(n=("covered", "size"), cover=("covered", "mean"),
                                                  base_cover=("base_covered", "mean"), score=("score", "mean"),
                                                  base_score=("base_score", "mean")).round(3).to_string())
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
