"""analysis.forecast: unit tests of the forecasting core (observations, the
random-effects regression, interval scores, the baseline, ForecastResults and
its warnings).  Everything here is small and synthetic; the simulations of
coverage and verdicts are in test_forecast_sim.py."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.forecast import fit_forecast, interval_score, observe
from analysis.forecast.backtest import baseline_predict
from analysis.forecast.observations import p_from_y, y_from_p
from analysis.forecast.regression import fit_meta


def _counts(rows):
    return pd.DataFrame(rows, columns=["model", "x", "instance", "n", "c"])


def _score_ladder(seed=0, n_sizes=7, chance=0.25, n_items=5000, y0=1.6, alpha=0.35, step=2.5):
    rng = np.random.default_rng(seed)
    lx = np.log(1e7) + np.arange(n_sizes) * np.log(step)
    s = chance + (1 - chance) * p_from_y(y0 - alpha * (lx - lx[0]))
    return pd.DataFrame({"model": [f"m{i}" for i in range(n_sizes)], "x": np.exp(lx),
                         "score": rng.binomial(n_items, s) / n_items, "n_items": n_items, "chance": chance})


def _fit(obs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_forecast(obs, **kw)


# ---------------------------------------------------------------- observe()

def test_observe_counts_task_pu_censoring_and_saturation():
    df = _counts([
        ("a", 1e6, 0, 10, 2), ("a", 1e6, 1, 20, 0),  # p = mean(0.2, 0) = 0.1, not pooled 2/30
        ("b", 1e7, 0, 50, 0), ("b", 1e7, 1, 150, 0),  # nothing passed: censored at 1/200
        ("c", 1e8, 0, 4, 4), ("c", 1e8, 1, 8, 8),  # everything passed: saturated
    ])
    obs = observe(df).set_index("model")
    assert list(obs.index) == ["a", "b", "c"] and (obs["kind"] == "counts").all()
    a, b, c = obs.loc["a"], obs.loc["b"], obs.loc["c"]
    assert a["p"] == pytest.approx(0.1) and a["budget"] == 30 and a["n_instances"] == 2
    assert not a["censored"] and not a["saturated"]
    assert a["y"] == pytest.approx(math.log(-math.log(0.1)))
    # Jeffreys-smoothed binomial variance of each instance's rate, averaged
    pt = np.array([2.5 / 11, 0.5 / 21])
    var_p = float(np.sum(pt * (1 - pt) / np.array([10, 20])) / 4)
    assert a["var_p"] == pytest.approx(var_p)
    assert a["var_y"] == pytest.approx(var_p / (0.1 * math.log(0.1)) ** 2)
    assert b["censored"] and not b["saturated"] and b["p"] == 0
    assert b["p_cens"] == pytest.approx(1 / 200) and math.isnan(b["y"])
    assert b["y_cens"] == pytest.approx(math.log(-math.log(1 / 200)))
    assert c["saturated"] and not c["censored"] and c["p"] == 1 and math.isnan(c["y"])
    assert obs["log_x"].tolist() == pytest.approx(np.log([1e6, 1e7, 1e8]).tolist())


def test_observe_scores_above_chance_and_censoring_near_chance():
    df = pd.DataFrame({"model": ["lo", "mid", "below", "hi"], "x": [1e6, 2e6, 3e6, 4e6],
                       "score": [0.26, 0.55, 0.20, 0.70], "n_items": 1000, "chance": 0.25})
    obs = observe(df).set_index("model")
    assert (obs["kind"] == "scores").all() and (obs["chance"] == 0.25).all()
    mid = obs.loc["mid"]
    assert mid["p"] == pytest.approx((0.55 - 0.25) / 0.75) and not mid["censored"]
    assert mid["var_p"] == pytest.approx(0.55 * 0.45 / 1000 / 0.75**2)
    assert mid["y"] == pytest.approx(math.log(-math.log(0.4)))
    assert obs.loc["hi", "p"] == pytest.approx(0.6) and not obs.loc["hi", "censored"]
    # 0.26 is 0.0133 above chance on the p scale, within 2 se (0.0185 each): censored
    sd_lo = math.sqrt(0.26 * 0.74 / 1000) / 0.75
    lo = obs.loc["lo"]
    assert lo["censored"] and math.isnan(lo["y"])
    assert lo["p_cens"] == pytest.approx(0.01 / 0.75 + 2 * sd_lo)
    # below chance: censored at 2 se above chance
    sd_below = math.sqrt(0.2 * 0.8 / 1000) / 0.75
    assert obs.loc["below", "censored"] and obs.loc["below", "p_cens"] == pytest.approx(2 * sd_below)
    # chance given by the caller overrides the table's column
    obs0 = observe(df, chance=0.0).set_index("model")
    assert obs0.loc["lo", "p"] == pytest.approx(0.26) and not obs0.loc["lo", "censored"]
    assert obs0.loc["mid", "p"] == pytest.approx(0.55)


def test_observe_identifies_models_by_model_not_by_x():
    df = pd.DataFrame({"model": ["seed0", "seed1", "big"], "x": [1e6, 1e6, 1e7],
                       "score": [0.3, 0.4, 0.6], "n_items": 500})
    obs = observe(df)
    assert len(obs) == 2 + 1 and sorted(obs["model"]) == ["big", "seed0", "seed1"]
    same = obs[obs["x"] == 1e6].set_index("model")
    assert same.loc["seed0", "p"] == pytest.approx(0.3) and same.loc["seed1", "p"] == pytest.approx(0.4)
    counts = _counts([("r0", 5e6, 0, 10, 1), ("r1", 5e6, 0, 10, 3), ("r1", 5e6, 1, 10, 5)])
    obs = observe(counts).set_index("model")
    assert len(obs) == 2 and obs.loc["r0", "p"] == pytest.approx(0.1) and obs.loc["r1", "p"] == pytest.approx(0.4)


def test_observe_rejects_bad_tables():
    with pytest.raises(ValueError, match="model"):
        observe(pd.DataFrame({"x": [1.0], "score": [0.5]}))
    with pytest.raises(ValueError, match="2 score rows"):
        observe(pd.DataFrame({"model": ["a", "a"], "x": [1.0, 1.0], "score": [0.5, 0.6]}))
    with pytest.raises(ValueError, match="> 0"):
        observe(pd.DataFrame({"model": ["a", "b"], "x": [0.0, 1.0], "score": [0.5, 0.6]}))
    with pytest.raises(ValueError, match="counts|scores"):
        observe(pd.DataFrame({"model": ["a"], "x": [1.0], "accuracy_pct": [50]}))


def test_y_and_p_are_inverse():
    p = np.array([1e-6, 0.01, 0.3, 0.9, 1 - 1e-9])
    assert p_from_y(y_from_p(p)) == pytest.approx(p, rel=1e-6)


# ---------------------------------------------------------------- regression

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fit_meta_recovers_slope_intercept_and_tau(seed):
    rng = np.random.default_rng(seed)
    n, tau, v = 40, 0.3, 0.05**2
    t = np.linspace(-3, 3, n)
    y = 0.8 - 0.4 * t + rng.normal(0, tau, n) + rng.normal(0, math.sqrt(v), n)
    X = np.column_stack([np.ones(n), t])
    fit = fit_meta(y, np.full(n, v), X)
    se = np.sqrt(np.diag(fit.cov_beta))
    assert abs(fit.beta[0] - 0.8) < 3.5 * se[0] and abs(fit.beta[0] - 0.8) < 0.2
    assert abs(fit.beta[1] + 0.4) < 3.5 * se[1] and abs(fit.beta[1] + 0.4) < 0.1
    assert 0.18 < math.sqrt(fit.tau2) < 0.42, math.sqrt(fit.tau2)
    # the standard errors count the scatter: about tau / sqrt(n) for the intercept
    assert se[0] == pytest.approx(math.sqrt((tau**2 + v) / n), rel=0.5)
    assert fit.n_obs == n and fit.n_censored == 0


def test_fit_meta_tau_small_when_only_sampling_noise():
    rng = np.random.default_rng(7)
    n = 40
    t = np.linspace(-3, 3, n)
    v = np.full(n, 0.2**2)  # known sampling noise, no extra scatter
    y = 0.8 - 0.4 * t + rng.normal(0, 0.2, n)
    fit = fit_meta(y, v, np.column_stack([np.ones(n), t]))
    assert math.sqrt(fit.tau2) < 0.1
    assert fit.beta[1] == pytest.approx(-0.4, abs=0.06)


def test_fit_meta_tau_over_seeds_is_near_the_truth():
    """Averaged over seeds, tau is estimated within 20% of its true value on
    ladders of 12 models (the REML estimate; the weak prior matters little)."""
    taus = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        t = np.linspace(-2, 2, 12)
        y = 1.0 - 0.3 * t + rng.normal(0, 0.25, 12)
        taus.append(math.sqrt(fit_meta(y, np.full(12, 1e-4), np.column_stack([np.ones(12), t])).tau2))
    assert 0.8 * 0.25 < float(np.sqrt(np.mean(np.square(taus)))) < 1.2 * 0.25, taus


def test_censored_models_pull_the_fit():
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 0.5, 0.0, -0.5, -1.0]) + np.array([0.02, -0.01, 0.0, 0.01, -0.02])
    v = np.full(5, 0.01)
    X = np.column_stack([np.ones(5), t])
    free = fit_meta(y, v, X)
    # two small models where nothing passed, bounded well above the line: y > 3 at t = -2, -1
    tc = np.array([-2.0, -1.0])
    Xc = np.column_stack([np.ones(2), tc])
    pulled = fit_meta(y, v, X, y_cens=[3.0, 3.0], X_cens=Xc)
    assert pulled.n_censored == 2
    assert pulled.beta[1] < free.beta[1] - 0.05  # steeper: the line is pulled up at small x
    assert pulled.mean(Xc[:1])[0] > free.mean(Xc[:1])[0] + 0.2
    # bounds the line already satisfies (y > -1 where it predicts 2) change next to nothing
    loose = fit_meta(y, v, X, y_cens=[-1.0, -1.0], X_cens=Xc)
    assert loose.beta == pytest.approx(free.beta, abs=0.02)


def test_censored_model_pulls_the_forecast_through_observe():
    """A ladder whose smallest models pass nothing: their bounds enter the law's fit."""
    rows = []
    pu = {1e6: 0.0, 2e6: 0.0, 4e6: 0.01, 8e6: 0.03, 1.6e7: 0.08, 3.2e7: 0.16}
    for m, (x, p) in enumerate(pu.items()):
        for i in range(10):
            rows.append((f"m{m}", x, i, 1000, int(round(p * 1000))))
    obs = observe(_counts(rows))
    assert obs["censored"].tolist() == [True, True, False, False, False, False]
    from analysis.forecast.forms import fit_form

    with_cens = fit_form(obs, "law")
    without = fit_form(obs[~obs["censored"]].reset_index(drop=True), "law")
    assert with_cens.fit.n_censored == 2 and without.fit.n_censored == 0
    # the resolved models' line extrapolates below the bound at the smallest
    # size (y 2.16 < y_cens 2.22, i.e. more passes than the 10000 samples
    # found); the bound pulls the law up there and steepens it
    lx_c = obs.loc[obs["censored"], "log_x"].to_numpy()
    y_cens = float(obs["y_cens"].iloc[0])
    mu_free, _ = without.predict(lx_c)
    mu_cens, _ = with_cens.predict(lx_c)
    assert mu_free[0] < y_cens
    assert mu_cens[0] > mu_free[0] + 0.03 and mu_cens[0] > y_cens - 0.02
    assert with_cens.fit.beta[1] < without.fit.beta[1] - 0.01


# ---------------------------------------------------------------- interval score and baseline

def test_interval_score_hand_examples():
    # inside: the width only
    assert interval_score(0.0, 1.0, 0.5) == pytest.approx(1.0)
    assert interval_score(0.0, 1.0, 0.0) == pytest.approx(1.0)
    # below by 0.1 at the 95% level: width + (2 / 0.05) * 0.1 = 1 + 4
    assert interval_score(0.0, 1.0, -0.1) == pytest.approx(5.0)
    # above by 0.2: 1 + 40 * 0.2
    assert interval_score(0.0, 1.0, 1.2) == pytest.approx(9.0)
    # 90% level: 2 / 0.1 = 20 per unit of miss
    assert interval_score(-1.0, 1.0, 1.5, alpha=0.1) == pytest.approx(2.0 + 20 * 0.5)
    got = interval_score([0, 0, 0], [1, 2, 1], [0.5, 3, -1])
    assert got.tolist() == pytest.approx([1.0, 2 + 40, 1 + 40])


def _train(log_x, y):
    n = len(log_x)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "log_x": log_x, "y": y,
                         "censored": [False] * n, "saturated": [False] * n})


def test_baseline_predict_hand_example():
    """y = 0, -1, -2, -2.5 at log x = 0..3.  Forward chaining: the line
    through sizes 0-1 misses size 2 by 0 (d = 1) and size 3 by 0.5 (d = 2);
    the line through sizes 0-2 misses size 3 by 0.5 (d = 1): errors per unit
    of d 0, 0.25, 0.5, s = sqrt(mean of squares).  Least squares on all four:
    y = -0.1 - 0.85 log x."""
    train = _train([0.0, 1.0, 2.0, 3.0], [0.0, -1.0, -2.0, -2.5])
    s = math.sqrt((0 + 0.25**2 + 0.5**2) / 3)
    mu, hw = baseline_predict(train, [2.0, 4.0, 5.0])
    assert mu.tolist() == pytest.approx([-0.1 - 0.85 * 2, -0.1 - 0.85 * 4, -0.1 - 0.85 * 5])
    assert hw.tolist() == pytest.approx([0.05, 1.96 * s * 1 + 0.05, 1.96 * s * 2 + 0.05])
    # two sizes cannot chain: s falls back to 0.5
    mu, hw = baseline_predict(_train([0.0, 1.0], [1.0, 0.0]), [3.0])
    assert mu[0] == pytest.approx(-2.0) and hw[0] == pytest.approx(1.96 * 0.5 * 2 + 0.05)


# ---------------------------------------------------------------- ForecastResults

@pytest.fixture(scope="module")
def law_fit():
    return _fit(observe(_score_ladder()))


def test_predict_intervals_contain_the_point_and_widen_with_distance(law_fit):
    top = float(law_fit.obs["x"].max())
    x = top * np.array([1.0, 2.0, 5.0, 20.0, 100.0])
    pred = law_fit.predict(x)
    assert list(pred["x"]) == pytest.approx(list(x))
    assert np.all(pred["lower"] <= pred["predicted"]) and np.all(pred["predicted"] <= pred["upper"])
    assert np.all(pred["p_lower"] <= pred["p"]) and np.all(pred["p"] <= pred["p_upper"])
    assert np.all(pred["lower"] >= 0.25 - 1e-12) and np.all(pred["upper"] <= 1)  # score scale: above chance
    assert pred["d"].tolist() == pytest.approx(np.log(x / top).tolist())
    width = (pred["y_upper"] - pred["y_lower"]).to_numpy()
    assert np.all(np.diff(width) > 0), width
    assert np.all(np.diff(pred["y_sd"].to_numpy()) > 0)
    # the score rises with scale and so does the prediction
    assert np.all(np.diff(pred["predicted"].to_numpy()) > 0)
    # a smaller sampling budget for the new model widens its interval
    small = law_fit.predict(x, budget=50)
    assert np.all(small["y_sd"].to_numpy() > pred["y_sd"].to_numpy())
    with pytest.raises(ValueError):
        law_fit.predict([0.0])


def test_predict_is_near_the_true_law(law_fit):
    """The ladder was drawn from y = 1.6 - 0.35 (log x - log 1e7): the
    prediction 4x beyond is close to it and the interval holds it."""
    x = float(law_fit.obs["x"].max()) * 4
    y_true = 1.6 - 0.35 * (math.log(x) - math.log(1e7))
    pred = law_fit.predict([x]).iloc[0]
    assert pred["y_lower"] < y_true < pred["y_upper"]
    assert abs(pred["y"] - y_true) < 0.15
    assert law_fit.params["alpha"] == pytest.approx(0.35, abs=0.05)
    ci = law_fit.conf_int()
    assert ci.loc["alpha", "lower"] < law_fit.params["alpha"] < ci.loc["alpha", "upper"]


def test_summary_mentions_the_forms_and_the_verdict(law_fit):
    text = law_fit.summary()
    for form in ("law", "local", "flat", "quadratic"):
        assert form in text
    assert law_fit.verdict.label in text and "verdict:" in text
    assert law_fit.verdict.label == "follows the law"
    assert abs(law_fit.weights.sum() - 1.0) < 1e-9


def test_to_dict_is_strict_json(law_fit):
    d = law_fit.to_dict()
    text = json.dumps(d, allow_nan=False)  # no NaN / inf anywhere
    back = json.loads(text)
    assert back["verdict"]["label"] == "follows the law"
    assert set(back["forms"]) >= {"law", "local", "flat"}
    assert back["forms"]["law"]["params"]["alpha"] == pytest.approx(law_fit.params["alpha"])
    assert len(back["models"]) == len(law_fit.obs) and back["models"][0]["model"] == "m0"
    assert back["calibration"]["kappa"] > 0


def test_to_dict_with_censored_models_is_strict_json():
    df = _score_ladder(seed=3)
    df.loc[0, "score"] = 0.251  # at chance: censored, y is NaN
    res = _fit(observe(df))
    assert res.obs["censored"].iloc[0]
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["models"][0]["censored"] is True and d["models"][0]["y"] is None
    assert "1 censored" in res.summary()


# ---------------------------------------------------------------- warnings

def test_warning_beyond_the_ladders_span(law_fit):
    obs = law_fit.obs
    top, span = float(obs["x"].max()), float(obs["x"].max() / obs["x"].min())
    near, far = top * span * 0.5, top * span * 2.0
    ws = law_fit.warnings_for([near, far])
    assert not any("extrapolates" in w for w in ws[0]), ws[0]
    assert any("extrapolates" in w and "beyond the largest model" in w for w in ws[1]), ws[1]


def test_warning_below_what_the_samples_can_resolve():
    rows = []
    pu = [0.002, 0.004, 0.008, 0.016, 0.032, 0.064]
    rng = np.random.default_rng(0)
    for m, p in enumerate(pu):
        for i in range(20):
            rows.append((f"m{m}", 1e6 * 2**m, i, 2000, int(rng.binomial(2000, p))))
    res = _fit(observe(_counts(rows)))
    x_new = 1e6 * 2**6
    p_new = float(res.predict([x_new])["p"].iloc[0])
    assert 0.03 < p_new < 0.5
    few = int(0.5 / p_new)  # fewer samples than one expected pass
    w_few = res.warnings_for([x_new], budget=few)[0]
    assert any(f"below what {few} samples can resolve" in w for w in w_few), w_few
    w_many = res.warnings_for([x_new], budget=100 * few)[0]
    assert not any("can resolve" in w for w in w_many), w_many
    # a model smaller than the ladder's smallest: p below one pass in the default budget (40000)
    w_small = res.warnings_for([1e6 / 2**8])[0]
    assert any("below what 40000 samples can resolve" in w for w in w_small), w_small


def test_no_resolution_warning_for_scores(law_fit):
    ws = law_fit.warnings_for([float(law_fit.obs["x"].max()) * 2], budget=1)
    assert not any("can resolve" in w for w in ws[0])
