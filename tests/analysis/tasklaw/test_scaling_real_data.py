"""Real public data (../shared/data, skipped where absent): Pythia's (deduped,
final checkpoint) zero-shot LAMBADA accuracy for 70M-1.4B predicts the 2.8B,
6.9B and 12B models."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.ingest import read_results
from analysis.tasklaw.law import backtest, fit_task_law

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
TARBALL = DATA / "pythia_evals" / "pythia_v1_evals.tar.gz"
# Pythia model cards: total parameters.
PARAMS = {"70m": 70_426_624, "160m": 162_322_944, "410m": 405_334_016, "1b": 1_011_781_632,
          "1.4b": 1_414_647_808, "2.8b": 2_775_208_960, "6.9b": 6_857_302_016, "12b": 11_846_072_320}
LAMBADA_DOCS = 5153


@pytest.fixture(scope="module")
def pythia(tmp_path_factory):
    if not TARBALL.is_file():
        pytest.skip(f"real data not present: {TARBALL}")
    root = tmp_path_factory.mktemp("pythia")
    with tarfile.open(TARBALL) as tf:
        tf.extractall(root, filter="data")
    return read_results(root)


def test_lambada_accuracy_of_small_pythias_predicts_the_large_ones(pythia):
    # The deduped suite has every size (the standard 1B exists only as bf16).
    sel = pythia[(pythia["task"] == "lambada_openai") & (pythia["metric"] == "acc")
                 & (pythia["num_fewshot"] == 0) & pythia["model"].str.endswith("-deduped@step143000")]
    size = sel["model"].str.extract(r"pythia-v1\.1-([\d.]+[mb])-deduped@")[0]
    sel = sel.assign(N=size.map(PARAMS)).dropna(subset=["N"])
    assert sorted(sel["N"]) == sorted(PARAMS.values())
    # One task-level "instance": the accuracy as passes out of LAMBADA's documents.
    df = pd.DataFrame({"N": sel["N"], "instance": "lambada", "n": LAMBADA_DOCS,
                       "c": np.round(sel["value"] * LAMBADA_DOCS).astype(int)})
    large = [PARAMS["2.8b"], PARAMS["6.9b"], PARAMS["12b"]]
    bt = backtest(df, large, level="task")
    print("\nPythia LAMBADA acc, fitted on 70M-1.4B:")
    print(bt.to_string(index=False))
    assert list(bt["N"]) == large
    # The errors are printed above; the law extrapolates within 20% of the
    # observed accuracy over an order of magnitude in size.
    assert (bt["rel_error"].abs() < 0.2).all(), bt
    fit = fit_task_law(df[~df["N"].isin(large)], level="task")
    assert fit.params["alpha"] > 0  # accuracy rises with size
