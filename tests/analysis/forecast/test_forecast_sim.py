"""analysis.forecast on simulated ladders: coverage of the 95% prediction
intervals and the verdicts, for the failures seen on real data.

Every ladder is drawn from a known curve on ``y = log(-log p)`` against
``log x`` (p: the score above chance, or the task PU of PassUntil counts),
fitted on its 5-6 smallest sizes and asked for its 1-3 largest ones
(the prediction ``backtest_obs(obs, split=...)`` makes for ``python -m
analysis backtest``).  Slopes are drawn in 0.15-0.4 per unit of ln x, the range of
the real ladders in ../shared/data (Pythia 0.19-0.37 across N, Gadre et al.
0.1-0.27 across compute, fitted on y vs ln x); sizes are 2-3x apart.

Fixed seeds; the measured rates are in the assertion messages (and printed,
``pytest -s``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.forecast import fit_forecast, interval_score, observe
from analysis.forecast.backtest import baseline_predict
from analysis.forecast.observations import observed_value, p_from_y

N_LADDERS = 50
SLOPES = (0.15, 0.4)


# ---------------------------------------------------------------- ladders

def _sizes(rng, n):
    return np.log(1e7) + np.arange(n) * np.log(rng.uniform(2.0, 3.0))


def _scores(rng, lx, y, n_items, chance=0.25):
    s = chance + (1 - chance) * p_from_y(y)
    n_items = int(n_items)
    return pd.DataFrame({"model": [f"m{i}" for i in range(len(lx))], "x": np.exp(lx),
                         "score": rng.binomial(n_items, s) / n_items, "n_items": n_items, "chance": chance})


def _counts(rng, lx, y, *, n_instances=30, n=500, spread=1.0):
    """PassUntil counts: instance rates spread around the task PU p(y)
    (logit-normal, rescaled to mean p), n samples per instance."""
    rows = []
    for i, (lxi, yi) in enumerate(zip(lx, y)):
        p = float(p_from_y(yi))
        z = np.log(p / (1 - p)) + rng.normal(0, spread, n_instances)
        pi = 1 / (1 + np.exp(-z))
        pi = np.clip(pi * p / pi.mean(), 0, 1)
        c = rng.binomial(n, pi)
        rows += [{"model": f"m{i}", "x": float(np.exp(lxi)), "instance": k, "n": n, "c": int(c[k])}
                 for k in range(n_instances)]
    return pd.DataFrame(rows, columns=["model", "x", "instance", "n", "c"])


def _holdout_coverage(tables_and_train) -> dict:
    """Fit each ladder's training sizes, predict its holdout models (what
    ``backtest_obs(obs, split=...)`` does, without its second fit): coverage
    of the observed value (score or task PU) by the 95% interval, and, on the
    y scale, the interval scores of the forecast and of the plain
    least-squares baseline."""
    covered, base, scores, base_scores, verdicts = [], [], [], [], []
    not_fitted = 0
    for df, n_train in tables_and_train:
        obs = observe(df)  # sorted by x: the first n_train rows are the training sizes
        train, test = obs.iloc[:n_train].reset_index(drop=True), obs.iloc[n_train:].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = fit_forecast(train)
            except ValueError as exc:  # too few training sizes resolved from chance: refused, not forecast
                assert "no form could be fitted" in str(exc)
                not_fitted += 1
                continue
            pred = res.predict(test["x"].to_numpy(), budget=test["budget"].to_numpy())
        val = observed_value(test)
        covered += ((pred["lower"] <= val) & (val <= pred["upper"])).tolist()
        y = test["y"].to_numpy()
        ok = np.isfinite(y)
        bmu, bhw = baseline_predict(train, test["log_x"].to_numpy())
        base += (np.abs(y - bmu) <= bhw)[ok].tolist()
        scores += interval_score(pred["y_lower"], pred["y_upper"], y)[ok].tolist()
        base_scores += interval_score(bmu - bhw, bmu + bhw, y)[ok].tolist()
        verdicts.append(res.verdict.label)
    out = {"coverage": float(np.mean(covered)), "n": len(covered), "base_coverage": float(np.mean(base)),
           "score": float(np.mean(scores)), "base_score": float(np.mean(base_scores)),
           "verdicts": pd.Series(verdicts).value_counts().to_dict(), "not_fitted": not_fitted}
    assert not_fitted <= 0.1 * len(tables_and_train), out
    print(out)
    return out


def _verdicts(tables) -> pd.Series:
    labels = []
    for df in tables:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels.append(fit_forecast(observe(df)).verdict.label)
    return pd.Series(labels)


# ---------------------------------------------------------------- 1. coverage

def test_holdout_prediction_is_what_backtest_obs_predicts():
    """_holdout_coverage re-does backtest_obs(split=...)'s prediction with one
    fit instead of two; the two agree."""
    from analysis.forecast import backtest_obs

    (df, n_train), = _sparse_ladders(5)[:1]
    obs = observe(df)
    split = np.where(np.arange(len(obs)) < n_train, "train", "holdout")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, _ = backtest_obs(obs, split=split)
        res = fit_forecast(obs.iloc[:n_train].reset_index(drop=True))
    test = obs.iloc[n_train:]
    pred = res.predict(test["x"].to_numpy(), budget=test["budget"].to_numpy())
    assert rows["model"].tolist() == test["model"].tolist()
    assert rows["lower"].to_numpy() == pytest.approx(pred["lower"].to_numpy())
    assert rows["upper"].to_numpy() == pytest.approx(pred["upper"].to_numpy())
    assert rows["observed"].to_numpy() == pytest.approx(observed_value(test))


def _shift_ladders(seed, n_train_choices):
    """The law, each model shifted off it by its own N(0, sd) on y, sd in
    0.2-0.3 (seeds, data order: between-model scatter a new model has too)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(N_LADDERS):
        n_train, n_hold = int(rng.choice(n_train_choices)), int(rng.integers(1, 4))
        lx = _sizes(rng, n_train + n_hold)
        y = rng.uniform(0.8, 1.6) - rng.uniform(*SLOPES) * (lx - lx[0])
        y = y + rng.normal(0, rng.uniform(0.2, 0.3), len(lx))
        out.append((_scores(rng, lx, y, rng.choice([1000, 3000, 5000])), n_train))
    return out


def _flattening_ladders(seed):
    """The law on the training sizes; beyond the largest one the slope halves."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(N_LADDERS):
        n_train, n_hold = int(rng.integers(5, 7)), int(rng.integers(1, 4))
        lx = _sizes(rng, n_train + n_hold)
        alpha = rng.uniform(*SLOPES)
        y = rng.uniform(0.8, 1.6) - alpha * (lx - lx[0])
        top = lx[n_train - 1]
        y = np.where(lx > top, y + 0.5 * alpha * (lx - top), y)
        y = y + rng.normal(0, 0.05, len(lx))
        out.append((_scores(rng, lx, y, 3000), n_train))
    return out


def _sparse_ladders(seed):
    """PassUntil counts, 30 instances x 500 samples per size; at the smallest
    size the task PU is 1/500 (about one pass per instance, most of them 0)."""
    rng = np.random.default_rng(seed)
    out = []
    y_sparse = np.log(-np.log(1 / 500))
    for _ in range(N_LADDERS):
        n_train, n_hold = int(rng.integers(5, 7)), int(rng.integers(1, 4))
        lx = _sizes(rng, n_train + n_hold)
        y = y_sparse - rng.uniform(*SLOPES) * (lx - lx[0]) + rng.normal(0, 0.1, len(lx))
        y[0] = y_sparse
        out.append((_counts(rng, lx, y, n_instances=30, n=500), n_train))
    return out


def test_coverage_law_with_per_model_shifts():
    """Models off the law by their own shift, the failure real ladders show
    most.  Measured 2026-11-29 19:40: 0.954 here (197 predictions), 0.933
    pooled over 300 ladders (seeds 100-105, 0.86-0.96 per 50).  Before
    regression.fit_meta's inverse-gamma(1) prior on tau^2 became a soft floor
    (19:32), tau was underestimated on 5-6 sizes (median 0.13 for a true
    0.2-0.3) and this was 0.898 here, 0.872 pooled."""
    r = _holdout_coverage(_shift_ladders(10, [5, 6]) + _shift_ladders(11, [5, 6]))
    assert r["n"] >= 150
    assert r["coverage"] >= 0.9, f"95% intervals, 5-6 training sizes, shifts sd 0.2-0.3: {r}"
    # intervals that cover by being useless would not be a forecast: a better score than the baseline's
    assert r["score"] < r["base_score"], r


def test_coverage_ladder_that_flattens_beyond_the_training_range():
    """The ladder is straight up to its largest training model, so its own
    forward chaining says kappa ~ 0 and the prior on kappa has to cover the
    bend.  Measured 2026-11-29 19:40: 0.971 here, 0.962 pooled over 300
    ladders (0.93-0.98 per 50); 0.91 pooled with the forecaster of 19:30."""
    r = _holdout_coverage(_flattening_ladders(12) + _flattening_ladders(14))
    assert r["n"] >= 150
    assert r["coverage"] >= 0.9, f"95% intervals, slope halves beyond the training range: {r}"
    # the plain least-squares baseline does miss these (its intervals trust the line)
    assert r["base_coverage"] < r["coverage"] and r["score"] < r["base_score"], r


def test_coverage_sparse_counts():
    r = _holdout_coverage(_sparse_ladders(13))
    assert r["n"] >= 80
    assert r["coverage"] >= 0.9, f"95% intervals, counts with 1 pass in 500 at the smallest size: {r}"


# ---------------------------------------------------------------- 2. verdicts

def _law_tables(seed, n_ladders=32):
    """True-law ladders measured with 1e6 samples per size (scores over 1e6
    items, or 20 instances x 50000 samples), 6-8 sizes, scatter <= 0.03."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_ladders):
        lx = _sizes(rng, int(rng.integers(6, 9)))
        y = rng.uniform(0.8, 1.6) - rng.uniform(*SLOPES) * (lx - lx[0]) + rng.normal(0, 0.03, len(lx))
        out.append(_scores(rng, lx, y, 1_000_000) if k % 2 == 0 else
                   _counts(rng, lx, y, n_instances=20, n=50_000, spread=0.5))
    return out


def test_true_law_with_a_million_samples_follows_the_law():
    labels = _verdicts(_law_tables(20))
    rate = float((labels == "follows the law").mean())
    print("true law:", labels.value_counts().to_dict())
    assert rate >= 0.9, f"'follows the law' in {rate:.2f} of {len(labels)} ladders: {labels.value_counts().to_dict()}"


def _flattening_tables(seed, n_ladders=30):
    """The law's slope goes to 0 over the upper half of the ladder; 1e6 samples per size."""
    rng = np.random.default_rng(seed)
    tables = []
    for k in range(n_ladders):
        n = int(rng.integers(6, 9))
        lx = _sizes(rng, n)
        alpha = rng.uniform(*SLOPES)
        y = rng.uniform(0.8, 1.6) - alpha * (lx - lx[0])
        mid = lx[n // 2]
        y = np.where(lx > mid, y[n // 2], y) + rng.normal(0, 0.03, n)
        tables.append(_scores(rng, lx, y, 1_000_000) if k % 2 == 0 else
                      _counts(rng, lx, y, n_instances=20, n=50_000, spread=0.5))
    return tables


def test_flattening_ladder_is_not_called_the_law():
    labels = _verdicts(_flattening_tables(21, n_ladders=60))
    print("flattening:", labels.value_counts().to_dict())
    rate = float((labels != "follows the law").mean())
    assert rate >= 0.8, f"not 'follows the law' in {rate:.2f} of {len(labels)} ladders: {labels.value_counts().to_dict()}"
    # where it is called a bend, it is the right kind
    bends = labels[labels.str.startswith("bends")]
    assert (bends == "bends (saturating)").all(), labels.value_counts().to_dict()


# ---------------------------------------------------------------- 3. no usable trend

@pytest.mark.parametrize("n_items", [2000, 1_000_000])
def test_flat_ladder_has_no_usable_trend(n_items):
    rng = np.random.default_rng(30 + (n_items > 10_000))
    tables = []
    for _ in range(10):
        lx = _sizes(rng, int(rng.integers(6, 9)))
        y = np.full(len(lx), rng.uniform(0.0, 1.2)) + rng.normal(0, 0.05, len(lx))
        tables.append(_scores(rng, lx, y, n_items))
    labels = _verdicts(tables)
    print("flat:", labels.value_counts().to_dict())
    assert (labels == "no usable trend").all(), labels.value_counts().to_dict()
