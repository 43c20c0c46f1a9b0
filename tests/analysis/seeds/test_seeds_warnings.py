"""analysis.seeds: what the seed analysis must say it cannot tell (issue 12).

- a threshold that separates model sizes rather than runs (evaluation seeds of
  one checkpoint per size: tiny spread within a size, gaps between sizes);
- tests that cannot reach the level with the runs given (a permutation test of
  3 vs 3 runs; a trend in P(success) from a handful of runs);
- a score that is not a number (a JSON string "0.41", "n/a") is an error
  naming the run, not a run dropped without a word;
- intervals for a bounded metric (an accuracy) stay inside [0, 1];
- the CLI reads a tidy CSV as well as lm-eval output.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.seeds.distributions import (
    _t_ci,
    permutation_min_pvalue,
    seed_distributions,
    trend_min_pvalue,
    wasserstein_test,
)

# the reported case: 3 sizes x 3 (sampling) seeds, sd ~0.002 within a size,
# gaps of 0.05 and 0.12 between sizes
EVAL_SIZES = ((1.6e8, 0.30), (4.1e8, 0.35), (1.4e9, 0.47))


def _eval_seed_table(sd=0.002, seeds=3, rng=0) -> pd.DataFrame:
    rng = np.random.default_rng(rng)
    return pd.DataFrame([{"model": f"m{N:.0e}-seed{s}", "N": N, "seed": s, "value": m + rng.normal(0, sd)}
                         for N, m in EVAL_SIZES for s in range(seeds)])


def _zhao(rng, n_seeds, weights=(0.15, 0.4, 0.6, 0.85), sizes=(1e6, 1e7, 1e8, 1e9)) -> pd.DataFrame:
    """Zhao et al.-style runs: each fails (~0.2) or succeeds (~0.7), the success
    weight rising with size."""
    rows = []
    for N, w in zip(sizes, weights):
        ok = rng.random(n_seeds) < w
        v = np.where(ok, rng.normal(0.7, 0.05, n_seeds), rng.normal(0.2, 0.05, n_seeds))
        rows += [{"N": N, "seed": s, "value": x} for s, x in enumerate(v)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- sizes, not runs

@pytest.mark.parametrize("threshold", [None, 0.4])
def test_threshold_between_sizes_is_called_sizes_not_runs(threshold):
    res = seed_distributions(_eval_seed_table(), threshold=threshold, n_boot=50, n_perm=99)
    assert list(res.table["n_success"]) == [0, 0, 3]  # what the user saw: 0/3, 0/3, 3/3
    w = res.sizes_not_runs
    assert w is not None and w in res.warnings
    assert f"the threshold {res.threshold:.4g} separates model sizes, not runs" in w
    assert "no size has runs on both sides" in w
    assert "all runs fail at N = 1.6e+08, 4.1e+08, all succeed at N = 1.4e+09" in w
    assert "P(success) is 0 or 1 at every size" in w
    assert "the logistic fit describes the gap between sizes, not run-to-run variation" in w
    # the numbers behind it: within-size sd ~0.002 against gaps of 0.05-0.12
    sd = max(g.std(ddof=1) for _, g in res.runs.groupby("N")["value"])
    assert f"largest sd {sd:.2g}) is small against" in w
    assert "gaps of 0.05 to 0.12 between adjacent sizes' means" in w
    assert "separates model sizes, not runs" in res.summary()
    d = res.to_dict()
    assert d["sizes_not_runs"] == w and w in d["warnings"]
    json.dumps(d)


def test_threshold_through_one_tight_size_still_warns():
    """A threshold inside one size's cluster makes that size 'mixed', but the runs
    it splits differ by 0.002 while the sizes differ by 0.05-0.12."""
    df = _eval_seed_table()
    mid = float(np.sort(df.loc[df["N"] == 4.1e8, "value"])[1])  # the middle run at 4.1e8: 2 of 3 succeed
    res = seed_distributions(df, threshold=mid, n_boot=0, n_perm=0)
    assert 0 < res.table["n_success"][1] < 3
    w = res.sizes_not_runs
    assert w is not None and w.startswith("the runs cluster by size")
    assert "mostly separates model sizes" in w and "N = 4.1e+08" in w
    # a noisy version of the same sizes (sd 0.05 within a size): runs overlap, no warning
    noisy = seed_distributions(_eval_seed_table(sd=0.05, seeds=10), threshold=0.35, n_boot=0, n_perm=0)
    assert noisy.sizes_not_runs is None


def test_zhao_bimodal_runs_are_not_called_sizes():
    """Runs that fail or succeed at every size (the population the analysis is
    for) never trigger the warning, with few seeds or many, data-chosen
    threshold or given."""
    rng = np.random.default_rng(12)
    for n_seeds in (6, 10, 40):
        for _ in range(5):
            df = _zhao(rng, n_seeds)
            for thr in (None, 0.45):
                res = seed_distributions(df, threshold=thr, n_boot=0, n_perm=0)
                assert res.sizes_not_runs is None, (n_seeds, res.sizes_not_runs)
                assert not any("not runs" in w or "cluster by size" in w for w in res.warnings)


# ---------------------------------------------------------------- tests that cannot reach the level

def test_permutation_min_pvalue_matches_enumeration():
    # every relabeling of 3 vs 3 well-separated runs: the exact p is 2/20
    x, y = np.array([0.1, 0.11, 0.12]), np.array([0.5, 0.51, 0.52])
    z = np.concatenate([x, y])
    w_obs = wasserstein_test(x, y, n_perm=0)[0]
    ws = [wasserstein_test(z[list(c)], np.delete(z, list(c)), n_perm=0)[0]
          for c in itertools.combinations(range(6), 3)]
    exact = np.mean(np.array(ws) >= w_obs - 1e-12)
    assert exact == pytest.approx(0.1) == permutation_min_pvalue(3, 3)
    assert permutation_min_pvalue(3, 4) == pytest.approx(1 / 35)
    assert permutation_min_pvalue(3, 3, 999) == pytest.approx(0.1)
    assert permutation_min_pvalue(20, 20, 19) == pytest.approx(0.05)  # limited by the 19 permutations
    assert math.isnan(permutation_min_pvalue(3, 3, 0))
    # the Monte Carlo p of the most separated 3 vs 3 cannot get below it
    assert wasserstein_test(x, y, n_perm=999, rng=0)[1] >= 0.08


def test_three_vs_three_permutation_test_is_said_to_be_unable_to_reject():
    res = seed_distributions(_eval_seed_table(), threshold=0.4, n_boot=0, n_perm=999)
    t = res.table
    assert list(t["wasserstein_min_pvalue"][:2]) == pytest.approx([0.1, 0.1])
    assert math.isnan(t["wasserstein_min_pvalue"][2])  # the largest size has no next
    w = next(w for w in res.warnings if w.startswith("the permutation test"))
    assert "cannot reach p < 0.05" in w
    assert "N = 1.6e+08 vs 4.1e+08 and N = 4.1e+08 vs 1.4e+09" in w
    assert "3 vs 3 runs: C(6,3) = 20 relabelings" in w and "p >= 2/20 = 0.1" in w
    assert "^ too few runs for this permutation test" in res.summary()
    # at level 0.2 it can reach: no warning
    loose = seed_distributions(_eval_seed_table(), threshold=0.4, n_boot=0, n_perm=999, level=0.2)
    assert not any(w.startswith("the permutation test") for w in loose.warnings)
    # 10 vs 10 runs but only 9 permutations: the permutations are the limit
    few = seed_distributions(_eval_seed_table(sd=0.05, seeds=10), threshold=0.35, n_boot=0, n_perm=9)
    w = next(w for w in few.warnings if w.startswith("the permutation test"))
    assert "10 vs 10 runs: 9 random relabelings: p >= 1/10 = 0.1" in w
    # 6 vs 6 runs, 999 permutations: p can go to 0.001; silent
    ok = seed_distributions(_eval_seed_table(sd=0.05, seeds=6), threshold=0.35, n_boot=0, n_perm=999)
    assert not any("cannot reach" in w for w in ok.warnings)
    # C(12,6) = 924 relabelings, the mirror image as extreme: 2/924 (above 1/1000)
    assert list(ok.table["wasserstein_min_pvalue"][:2]) == pytest.approx([2 / 924] * 2)


def test_trend_min_pvalue_matches_enumeration():
    """Exact conditional test of a rising P(success): all C(N, K) placements of
    the K successes among the runs; the most extreme one is the bound."""
    n, k = np.array([3, 3]), np.array([0, 3])
    x = np.repeat(np.log([1e6, 1e7]), n)
    t_obs = np.log(1e7) * 3
    ts = [x[list(c)].sum() for c in itertools.combinations(range(6), 3)]
    assert np.mean(np.array(ts) >= t_obs - 1e-9) == pytest.approx(0.05)
    assert trend_min_pvalue(n, k) == pytest.approx((0.05, 0.05))
    assert trend_min_pvalue([3, 3, 3], [0, 0, 3]) == pytest.approx((1 / 84, 1 / 84))
    # 2 successes among 3 + 4 runs: both at the larger size C(4,2) = 6 of C(7,2) = 21 ways
    assert trend_min_pvalue([3, 4], [1, 1]) == pytest.approx((6 / 21, 3 / 21))
    assert trend_min_pvalue([3, 3], [0, 0]) == (1.0, 1.0)
    df = pd.DataFrame([{"N": N, "seed": s, "value": v} for N, v in ((1e6, 0.1), (1e7, 0.9)) for s in range(3)])
    res = seed_distributions(df, threshold=0.5, n_boot=0, n_perm=0)
    w = next(w for w in res.warnings if "exact test of a trend" in w)
    assert "with 3 successful of 6 runs" in w and "cannot give p below 0.05 one-sided (0.1 two-sided)" in w
    # 3 sizes x 3 seeds, 0/3, 0/3, 3/3: 1/84 one-sided, reachable; silent
    res3 = seed_distributions(_eval_seed_table(), threshold=0.4, n_boot=0, n_perm=0)
    assert not any("exact test of a trend" in w for w in res3.warnings)


# ---------------------------------------------------------------- non-numeric scores

def test_text_score_in_a_dataframe_is_an_error_naming_the_run():
    df = _eval_seed_table().assign(file="runs.csv")
    df["value"] = df["value"].astype(object)
    df.loc[4, "value"] = "0.41"  # a JSON string that to_numeric would read quietly
    with pytest.raises(ValueError, match="not text") as exc:
        seed_distributions(df, threshold=0.4)
    msg = str(exc.value)
    assert "model='m4e+08-seed1'" in msg and "seed=1" in msg and "N=410000000.0" in msg
    assert "value='0.41'" in msg and "file='runs.csv'" in msg
    df.loc[4, "value"] = "n/a"
    with pytest.raises(ValueError, match="must be a finite number") as exc:
        seed_distributions(df, threshold=0.4)
    assert "model='m4e+08-seed1'" in str(exc.value) and "'n/a'" in str(exc.value)


def _results_file(directory, model, acc, n_params):
    directory.mkdir(parents=True)
    data = {"results": {"toy": {"alias": "toy", "acc,none": acc, "acc_stderr,none": "N/A",
                                "acc_norm,none": 0.5}},
            "configs": {"toy": {}}, "n-shot": {"toy": 0},
            "config": {"model": "hf", "model_args": f"pretrained={model}", "model_num_parameters": n_params}}
    path = directory / "results_2025-01-01T00-00-00.000000.json"
    path.write_text(json.dumps(data))
    return path


def _population(root, bad: dict):
    files = {}
    for i, (N, m) in enumerate(EVAL_SIZES):
        for seed in range(3):
            model = f"org/lm{i}-seed{seed}"
            files[model] = _results_file(root / f"{i}-{seed}", model, bad.get(model, m + 0.001 * seed), N)
    return files


def test_cli_refuses_a_string_score_naming_the_run(tmp_path, capsys):
    from analysis.cli import main

    files = _population(tmp_path / "runs", {"org/lm1-seed2": "0.41", "org/lm2-seed0": "n/a"})
    rc = main(["seeds", str(tmp_path / "runs"), "--metric", "acc", "--output_path", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the score of 'acc' (filter 'none') is not a number in 2 run(s)" in err
    assert (f'org/lm1-seed2 (seed 2, N 4.1e+08): acc,none = "0.41" (a JSON string) in {files["org/lm1-seed2"]}'
            in err)
    assert f'org/lm2-seed0 (seed 0, N 1.4e+09): acc,none = "n/a" (a JSON string) in {files["org/lm2-seed0"]}' in err
    assert not (tmp_path / "out").exists()


def test_cli_metric_held_only_as_text_is_not_replaced_by_another(tmp_path, capsys):
    """Before: every acc a string -> the reader saw only acc_norm and the
    analysis ran on it without a word.  Now acc (the primary metric) is
    chosen, and its text scores are an error, never acc_norm in its place."""
    from analysis.cli import main

    models = [f"org/lm{i}-seed{s}" for i in range(3) for s in range(3)]
    _population(tmp_path / "runs", {m: str(0.3) for m in models})
    assert main(["seeds", str(tmp_path / "runs"), "--output_path", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the score of 'acc' (filter 'none') is not a number in 9 run(s)" in err and "acc_norm" not in err
    assert main(["seeds", str(tmp_path / "runs"), "--metric", "acc", "--output_path", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not a number in 9 run(s)" in err and "org/lm0-seed0 (seed 0, N 1.6e+08)" in err


def test_load_seed_runs_names_seed_from_manifest_in_the_error(tmp_path):
    from analysis.seeds.cli import load_seed_runs

    _population(tmp_path / "runs", {"org/lm0-seed1": None})  # JSON null
    man = tmp_path / "m.csv"
    man.write_text("model,N,seed\norg/lm0-seed1,1.6e8,41\n")
    with pytest.raises(ValueError) as exc:
        load_seed_runs(tmp_path / "runs", man, metric="acc")
    assert "org/lm0-seed1 (seed 41, N 1.6e+08): acc,none = null (JSON null)" in str(exc.value)


# ---------------------------------------------------------------- bounded intervals

def test_accuracy_intervals_stay_in_zero_one():
    rows = ([{"N": 1e6, "seed": s, "value": v} for s, v in enumerate([0.0, 0.0, 0.05])]
            + [{"N": 1e7, "seed": s, "value": v} for s, v in enumerate([0.95, 1.0, 1.0])]
            + [{"N": 1e8, "seed": s, "value": v} for s, v in enumerate([0.2, 0.7, 0.25, 0.65])])
    df = pd.DataFrame(rows)
    # what a plain t interval does with an accuracy near 0 or 1
    x0, x1 = np.array([0.0, 0.0, 0.05]), np.array([0.95, 1.0, 1.0])
    assert _t_ci(x0, 0.05)[0] < 0 and _t_ci(x1, 0.05)[1] > 1
    res = seed_distributions(df, threshold=0.5, n_boot=100, n_perm=0)
    assert res.bounds == (0.0, 1.0) and res.to_dict()["bounds"] == [0.0, 1.0]
    assert "Student t on the logit scale within [0, 1]" in res.summary()
    t = res.table
    for col in ("mean", "mean_success", "mode"):
        lo, hi, v = t[f"{col}_lower"], t[f"{col}_upper"], t[col]
        ok = lo.notna()
        assert ((lo[ok] > 0) | (col == "mode")).all() and (lo[ok] >= 0).all() and (hi[ok] <= 1).all(), col
        assert (lo[ok] <= v[ok]).all() and (v[ok] <= hi[ok]).all(), col
    assert ((t["p_success_lower"] >= 0) & (t["p_success_upper"] <= 1)).all()
    # the logit interval is the delta-method t interval on logit(mean), mapped back
    m, se = x0.mean(), x0.std(ddof=1) / math.sqrt(3)
    q = stats.t.isf(0.025, 2)
    eta, s_eta = math.log(m / (1 - m)), se / (m * (1 - m))
    want = [1 / (1 + math.exp(-(eta - q * s_eta))), 1 / (1 + math.exp(-(eta + q * s_eta)))]
    assert [t["mean_lower"][0], t["mean_upper"][0]] == pytest.approx(want)
    # in the middle of the range it is close to the plain t interval
    mid = np.array([0.45, 0.5, 0.55, 0.48, 0.52])
    assert _t_ci(mid, 0.05, (0.0, 1.0)) == pytest.approx(_t_ci(mid, 0.05), abs=0.005)
    # bounds=None: the plain t interval, as before
    plain = seed_distributions(df, threshold=0.5, n_boot=0, n_perm=0, bounds=None)
    assert plain.table["mean_lower"][0] == pytest.approx(_t_ci(x0, 0.05)[0]) and plain.bounds is None
    # values outside [0, 1] (a loss, a difference): unbounded under "auto"
    assert seed_distributions(df.assign(value=df["value"] * 3 - 1), threshold=0.5, n_boot=0,
                              n_perm=0).bounds is None
    with pytest.raises(ValueError, match="outside"):
        seed_distributions(df, threshold=0.5, bounds=(0.1, 1.0))
    with pytest.raises(ValueError, match="bounds must be"):
        seed_distributions(df, threshold=0.5, bounds="yes")


# ---------------------------------------------------------------- tidy CSV through the CLI

def test_cli_reads_a_tidy_csv_and_prints_the_warnings(tmp_path, capsys):
    from analysis.cli import main

    df = _eval_seed_table()
    csv = tmp_path / "evals.csv"
    df.rename(columns={"value": "score"}).assign(task="toy").to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["seeds", str(csv), "--n_boot", "50", "--output_path", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "separates model sizes, not runs" in text and "P(success) is 0 or 1 at every size" in text
    assert "cannot reach p < 0.05" in text
    report = json.loads((out / "seeds_toy_acc.json").read_text())
    assert [s["n_seeds"] for s in report["sizes"]] == [3, 3, 3]
    assert [s["n_success"] for s in report["sizes"]] == [0, 0, 3]
    assert report["sizes_not_runs"] and report["bounds"] == [0.0, 1.0]
    assert {m["file"] for m in report["models"]} == {str(csv)}
    for s in report["sizes"]:
        assert 0 <= s["mean_lower"] <= s["mean"] <= s["mean_upper"] <= 1
    assert (out / "seeds_toy_acc.png").stat().st_size > 10_000
    # "n/a" in the table: an error naming the file and line, not a dropped run
    lines = csv.read_text().splitlines()
    cells = lines[5].split(",")
    cells[3] = "n/a"  # the score column (model, N, seed, score, task)
    lines[5] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    assert main(["seeds", str(bad), "--output_path", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6:" in err and "score" in err
