"""Loss -> accuracy and the two-step chain on real ladders: coverage, error, width.

Measures, on the real data of ``../shared/data`` (see bench/real_ladders.py):

1. **Gadre et al. (2024)**, per training data set: fit every model <= 411M,
   predict the 1.4B and 6.9B models' accuracy from their loss, for every
   downstream task whose accuracy rises clearly above chance on the fitted
   models (the mean of the three best fitted models is >= 0.03 and >= 5
   binomial standard errors above chance).  Compared, on the same rows: the
   emergence law's ReLU curve (``analysis.emergence.fit_emergence_curve``,
   floor fitted) and a plain four-parameter sigmoid (least squares, floor and
   ceiling fitted).  ``--loss`` picks the loss column (default: C4 validation
   loss; also ``loss_own_train_distribution_val``).
2. **Pythia** (deduped, zero-shot, checkpoints after warmup): the two-step
   chain.  Loss = log of the LAMBADA perplexity (the only loss the v0.3
   evals carry: nats per target token on LAMBADA), fitted with Chinchilla's
   L(N, D) on every checkpoint of the models <= 1.4B, then accuracy from that
   loss; predicted for every checkpoint of 2.8B, 6.9B and 12B from (N,
   tokens) alone.  Also the one-step curve (accuracy from the observed loss).
3. ``--measure-prior``: the forward-chaining errors of each curve form and of
   the weighted forecast, pooled over the ladders (each ladder-task weighted
   equally), and the RMS unexplained error per unit of r = log(L_min / L) / log(L_max / L_min):
   the ``kappa0`` of ``analysis.forecast.lossacc.PRIOR``; and the loss law's
   ``kappa0`` (``analysis.forecast.losslaw.PRIOR``).
4. ``--cli``: writes the Gadre table as one CSV with ``split`` and runs
   ``python -m analysis backtest CSV --x loss`` on it, and checks that the
   CLI's coverage matches (1).

Ratios and coverage come from one run; nothing is timed.

    python bench/loss_coverage.py [--loss COLUMN] [--skip-pythia] [--measure-prior] [--cli]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from analysis.forecast.lossacc import (DEFAULT_CURVES, backtest_loss_obs, backtest_loss_table,  # noqa: E402
                                       forward_chain_loss, observe_loss)
from analysis.forecast.losslaw import forward_chain_loss_law  # noqa: E402
from real_ladders import DEFAULT_DATA_DIR, GADRE_FILE, gadre_table, pythia_table  # noqa: E402

GADRE_TRAIN_MAX_N = 5e8  # the 411M models and below


def rises_above_chance(scores, chance, n_items) -> bool:
    top = float(np.mean(np.sort(np.asarray(scores, float))[-3:]))
    se = np.sqrt(top * (1 - top) / n_items) if np.isfinite(n_items) else 0.0
    return top - chance >= 0.03 and top - chance >= 5 * se


def gadre_loss_table(loss: str) -> pd.DataFrame:
    wide = pd.read_csv(DEFAULT_DATA_DIR / GADRE_FILE)
    tab, _ = gadre_table()
    tab = tab.merge(wide[["name", loss]].rename(columns={"name": "model", loss: "loss"}), on="model")
    tab["split"] = np.where(tab["N"] < GADRE_TRAIN_MAX_N, "train", "holdout")
    return tab


def _sigmoid4(L, a, y, n):
    f = lambda L, k, L0, b, u: b + (u - b) * special.expit(-k * (L - L0))  # noqa: E731
    span = L.max() - L.min()
    best = None
    for k0 in (2 / span, 10 / span, 30 / span):
        for L00 in np.linspace(L.min() - span / 2, L.max(), 6):
            try:
                p, _ = optimize.curve_fit(f, L, y, p0=[k0, L00, y.min(), min(1, y.max() + 0.1)],
                                          bounds=([0, -np.inf, 0, 0], [np.inf, np.inf, 1, 1]), maxfev=5000)
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((f(L, *p) - y) ** 2))
            if best is None or sse < best[0]:
                best = (sse, p)
    return (lambda Lx: f(Lx, *best[1])) if best else None


def _relu_curve(train: pd.DataFrame):
    from analysis.emergence.law import fit_emergence_curve

    d = pd.DataFrame({"checkpoint": train["model"], "L": train["L"], "perf": train["score"],
                      "n": train["n_items"]})
    fit = fit_emergence_curve(d, n_boot=0)
    return lambda Lx: fit.predict(np.asarray(Lx, float), interval=False)["perf"].to_numpy()


def gadre_backtest(loss: str, criterion: str = "train") -> pd.DataFrame:
    """``criterion``: "train" = tasks rising above chance on the fitted
    models; "held-out only" = tasks that rise only counting the 1.4B and 6.9B
    models too (emerging beyond the fitted range: the hard case)."""
    tab = gadre_loss_table(loss)
    out = []
    for ds, g in tab.groupby("dataset"):
        for task, gt in g.groupby("task"):
            tr = gt[gt["split"] == "train"]
            c, n = gt["chance"].iloc[0], gt["n_items"].iloc[0]
            on_train = rises_above_chance(tr["score"], c, n)
            if criterion == "train" and not on_train:
                continue
            if criterion != "train" and (on_train or not rises_above_chance(gt["score"], c, n)):
                continue
            obs = observe_loss(gt, x="loss")
            sp = obs["model"].map(gt.set_index("model")["split"]).to_numpy()
            rows, final = backtest_loss_obs(obs, split=sp)
            train, test = obs[sp == "train"], obs[sp == "holdout"]
            sig = _sigmoid4(train["L"].to_numpy(), None, train["score"].to_numpy(), None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    relu = _relu_curve(train)
                    rows["relu"] = relu(test["L"].to_numpy())
                except Exception as exc:  # noqa: BLE001 - the comparison must not stop the bench
                    print(f"  relu fit failed on {ds}/{task}: {exc}", file=sys.stderr)
                    rows["relu"] = np.nan
            rows["sigmoid4"] = sig(test["L"].to_numpy()) if sig else np.nan
            rows["dataset"], rows["task"], rows["verdict"] = ds, task, final.verdict
            out.append(rows)
    return pd.concat(out, ignore_index=True)


def pythia_loss_table() -> pd.DataFrame:
    raw = pd.read_csv(DEFAULT_DATA_DIR / "pythia_evals/pythia_v1_evals_tidy.csv.gz")
    raw["variant"] = raw["variant"].fillna("standard")
    acc = pythia_table(checkpoint_ids=True, _raw=raw)
    lam = raw[(raw["variant"] == "deduped") & (raw["eval_kind"] == "zero-shot") & (raw["task"] == "lambada_openai")
              & (raw["metric"] == "ppl")]
    lam = lam.assign(model=lam["model"] + "@" + lam["step"].astype(str), loss=np.log(lam["value"].astype(float)))
    t = acc.merge(lam[["model", "loss"]], on="model")
    t = t[(t["step"] >= 3000) & (t["task"] != "lambada_openai")]
    t["split"] = np.where(t["N"] <= 1.5e9, "train", "holdout")
    return t


def summarize(rows: pd.DataFrame, by=None) -> pd.DataFrame:
    def agg(g):
        d = {"n": len(g), "coverage": g["covered"].mean(), "mae": (g["predicted"] - g["observed"]).abs().mean(),
             "median_width": (g["upper"] - g["lower"]).median(), "interval_score": g["score"].mean()}
        for c in ("relu", "sigmoid4"):
            if c in g:
                d[f"mae_{c}"] = (g[c] - g["observed"]).abs().mean()
        if "loss_covered" in g:
            d["loss_coverage"] = g["loss_covered"].mean()
        return pd.Series(d)

    if by is None:
        return agg(rows).to_frame("pooled").T
    return rows.groupby(by).apply(agg)


def measure_prior(tables: list[tuple[str, pd.DataFrame]]) -> dict:
    """kappa0 per curve form and for the loss law from forward-chaining errors."""
    from analysis.forecast.calibration import calibrate
    from analysis.forecast.forecaster import FormResult, mixture_errors, weigh
    from analysis.forecast.lossacc import _PRIOR_WEIGHT, PRIOR, _fit

    pooled = {f: [] for f in DEFAULT_CURVES + ("mixture",)}
    for name, tab in tables:
        for task, gt in tab.groupby("task"):
            if not rises_above_chance(gt["score"], gt["chance"].iloc[0], gt["n_items"].iloc[0]):
                continue
            obs = observe_loss(gt, x="loss")
            res = {}
            for form in DEFAULT_CURVES:
                e = forward_chain_loss(obs, form)
                if len(e):
                    e = e.assign(w=e["w"] / e["w"].sum())  # each (ladder, task) weighs one
                    pooled[form].append(e)
                    res[form] = FormResult(_fit(obs, form), calibrate(e, PRIOR, form), e)
            if res:
                weigh(res, _PRIOR_WEIGHT)
                m = mixture_errors(res)
                if len(m):
                    m = m.assign(w=m["w"] / m["w"].sum())
                    pooled["mixture"].append(m)
    out = {}
    flat_prior = {"kappa0": 0.0, "nu0": 0.0}
    for form, frames in pooled.items():
        if frames:
            e = pd.concat(frames, ignore_index=True)
            out[form] = round(calibrate(e, flat_prior, form).kappa, 4)
    return out


def measure_law_prior(tables) -> dict:
    from analysis.forecast.calibration import calibrate

    frames = []
    for name, tab, x in tables:
        m = tab.groupby("model").first().reset_index()
        e = forward_chain_loss_law(m, x=x, loss="loss")
        if len(e):
            frames.append(e.assign(w=e["w"] / e["w"].sum()))
    e = pd.concat(frames, ignore_index=True)
    return {"kappa0": round(calibrate(e, {"kappa0": 0.0, "nu0": 0.0}).kappa, 4), "n_errors": len(e)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loss", default="loss_paloma_c4_en", help="Gadre loss column (default: %(default)s)")
    ap.add_argument("--skip-pythia", action="store_true")
    ap.add_argument("--skip-gadre", action="store_true")
    ap.add_argument("--measure-prior", action="store_true")
    ap.add_argument("--cli", action="store_true", help="also run python -m analysis backtest on the Gadre CSV")
    ap.add_argument("--out", help="directory for the rows (CSV)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    pd.set_option("display.width", 200)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if args.measure_prior:
        g = gadre_loss_table(args.loss)
        p = pythia_loss_table()
        tabs = [(f"gadre_{ds}", t[["model", "task", "score", "n_items", "chance", "loss", "run"]])
                for ds, t in g.groupby("dataset")]
        tabs.append(("pythia_ckpts", p[["model", "task", "score", "n_items", "chance", "loss", "run"]]))
        print("curve kappa0 (score per unit of r = log(L_min/L) / log(L_max/L_min)):", json.dumps(measure_prior(tabs)))
        law_tabs = [(f"gadre_{ds}", t, "N") for ds, t in g.groupby("dataset")] + [("pythia", p, "N")]
        print("loss law kappa0 (log L per unit of log N):", json.dumps(measure_law_prior(law_tabs)))
    if not args.skip_gadre:
        rows = gadre_backtest(args.loss)
        print(f"== Gadre et al.: fit <= 411M, predict 1.4B and 6.9B from {args.loss} (tasks rising above "
              "chance on the fitted models)")
        print(summarize(rows, "task").round(3).to_string())
        print(summarize(rows).round(4).to_string())
        late = gadre_backtest(args.loss, "held-out only")
        print("== the same, tasks that rise above chance only with the held-out models (emerging beyond the "
              "fitted range)")
        print(summarize(late, "task").round(3).to_string())
        print(summarize(late).round(4).to_string())
        print("== both")
        print(summarize(pd.concat([rows, late], ignore_index=True)).round(4).to_string())
        if out:
            rows.to_csv(out / "gadre_loss_rows.csv", index=False)
        if args.cli:
            with tempfile.TemporaryDirectory() as td:
                tab = gadre_loss_table(args.loss)
                keep = rows[["dataset", "task"]].drop_duplicates()
                cov = []
                for ds, t in tab.groupby("dataset"):
                    tasks = keep.loc[keep["dataset"] == ds, "task"].tolist()
                    csv = Path(td) / f"gadre_{ds}.csv"
                    t[t["task"].isin(tasks)].to_csv(csv, index=False)
                    subprocess.run([sys.executable, "-m", "analysis", "backtest", str(csv), "--x", "loss",
                                    "--out", str(Path(td) / ds)], check=True, cwd=ROOT, capture_output=True)
                    rep = json.loads((Path(td) / ds / "backtest.json").read_text())
                    cov += [p["covered"] for e in rep["tasks"].values() for p in e["predictions"]]
                print(f"CLI (python -m analysis backtest CSV --x loss, one CSV per data set): coverage "
                      f"{np.mean(cov):.3f} over {len(cov)} predictions")
    if not args.skip_pythia:
        p = pythia_loss_table()
        report, details = backtest_loss_table(p, x_name="N", via="loss")
        rows = pd.concat([d["rows"].assign(task=t) for t, d in details.items() if len(d["rows"])], ignore_index=True)
        print("== Pythia deduped checkpoints: two-step chain (N, tokens) -> LAMBADA loss -> accuracy, "
              "fit <= 1.4B, predict 2.8B-12B")
        print(summarize(rows, "task").round(3).to_string())
        print(summarize(rows).round(4).to_string())
        report1, details1 = backtest_loss_table(p, x_name="loss")
        rows1 = pd.concat([d["rows"].assign(task=t) for t, d in details1.items() if len(d["rows"])], ignore_index=True)
        print("== Pythia, one step: accuracy from the observed LAMBADA loss")
        print(summarize(rows1, "task").round(3).to_string())
        print(summarize(rows1).round(4).to_string())
        if out:
            rows.to_csv(out / "pythia_chain_rows.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
