"""Real public data (../shared/data, skipped where absent): Gadre et al. 2024's
104 open models (11M-6.9B parameters, three pretraining sets, 0.25-32x
Chinchilla tokens).  The emergence curve Perf = A*ReLU(E - L) + B of
WinoGrande accuracy against C4 validation loss, fitted on the models up to
411M parameters, predicts the 1.4B and 6.9B models' accuracy.

Why WinoGrande: it is the task in the table that looks most like emergence
against loss.  Every model with a C4 loss above ~3.2 nats (all 11M-154M models
and most 411M ones) sits at chance (0.49-0.52 on the binary choice); accuracy
rises only among the strongest 411M models and reaches 0.60-0.64 at 1.4B-6.9B.
HellaSwag and ARC-Easy rise from chance much earlier (at ~4.5 nats), and
LAMBADA has no flat stretch at all.  Each score is a count of correct answers
on WinoGrande's 1,267 validation items (every accuracy in the file times 1,267
is a whole number), so the binomial likelihood applies.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.emergence.law import fit_emergence_curve

CSV = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "gadre2024_scaling" / "gadre2024_wide.csv"
WINOGRANDE_ITEMS = 1267
LARGEST_FITTED = 411_616_256  # parameters of the 411M models


@pytest.fixture(scope="module")
def gadre():
    if not CSV.is_file():
        pytest.skip(f"real data not present: {CSV}")
    return pd.read_csv(CSV)


def test_winogrande_accuracy_of_small_models_predicts_the_large_ones(gadre):
    df = pd.DataFrame({"checkpoint": gadre["name"], "L": gadre["loss_paloma_c4_en"],
                       "perf": gadre["winogrande"], "n": WINOGRANDE_ITEMS, "params": gadre["params"]})
    train, test = df[df["params"] <= LARGEST_FITTED], df[df["params"] > LARGEST_FITTED]
    assert len(train) == 95 and len(test) == 9  # 1.4B x 6, 6.9B x 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_emergence_curve(train, n_boot=100, seed=0)
    assert fit.likelihood == "binomial" and fit.bootstrap == "checkpoint"
    pred = fit.predict(test["L"].to_numpy())
    out = test.assign(predicted=pred["perf"].to_numpy(), lower=pred["lower"].to_numpy(),
                      upper=pred["upper"].to_numpy())
    out["error"] = out["predicted"] - out["perf"]
    print("\n" + fit.summary())
    print("WinoGrande accuracy of the 1.4B and 6.9B models, predicted from <= 411M:")
    print(out[["checkpoint", "params", "L", "perf", "predicted", "lower", "upper", "error"]]
          .sort_values("L").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    em = fit.emergence_loss().iloc[0]
    # the floor is chance on a binary task, and the kink lies inside the data
    assert abs(fit.params["B"] - 0.5) < 0.02
    assert train["L"].min() < em["lower"] <= em["E"] <= em["upper"] < train["L"].max()
    # Observed: mean absolute error 0.045, largest 0.091 (1.4B on RefinedWeb, 16x);
    # the law under-predicts every large model (accuracy keeps accelerating as
    # the loss falls, the linear arm of the ReLU does not).  Bounds with room:
    err = out["error"].to_numpy()
    assert np.mean(np.abs(err)) < 0.06 and np.max(np.abs(err)) < 0.12, err
    # better than predicting chance (0.5) for the large models
    assert np.mean(np.abs(err)) < np.mean(np.abs(out["perf"] - 0.5))
