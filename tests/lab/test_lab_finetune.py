"""The lab's finetuning leg (lm_eval_ext.lab.finetune_leg): its data, the
fitting glue on a synthetic table, the check, and a tiny lab end to end
(finetune, fit, finetune_prediction.json before the largest model, report,
resume)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from lm_eval_ext.lab import finetune_leg as fl
from lm_eval_ext.lab import synthetic as syn
from lm_eval_ext.lab.synthetic import TaskSpec


# ---------------------------------------------------------------- data

def test_finetune_examples_never_touch_scoring_or_test_items():
    spec = TaskSpec(n_test=8)
    items = fl.eval_items("lab_add_long", spec, 40)
    assert [r["prompt"] for r in items[:8]] == [r["prompt"] for r in syn.test_set("add_long", spec)]
    pool = fl.finetune_pool("lab_add_long", spec, 300, 40)
    assert pool == fl.finetune_pool("lab_add_long", spec, 300, 40)  # deterministic
    prompts = [p for p, _ in pool]
    assert len(set(prompts)) == 300
    assert not set(prompts) & ({r["prompt"] for r in items} | syn.held_out_prompts(spec))
    for p, a in pool[:50]:
        x, y = p[:-1].split("+")
        assert len(x) == len(y) == 3 and a == str(int(x) + int(y))[::-1]
    ex = fl.finetune_examples("lab_add_long", spec, 16, 40, 300)
    assert [(e.prompt, e.completion) for e in ex] == [(p, a + "\n") for p, a in pool[:16]]  # D: a prefix
    with pytest.raises(ValueError, match="unknown lab task"):
        fl.task_kind("lab_mul")
    with pytest.raises(ValueError, match=">= 3 distinct D"):
        fl.FinetuneLegConfig(Ds=(4, 16))


# ---------------------------------------------------------------- fitting glue

def _synthetic(seed=0):
    """Rows from a known law: Perf = A ReLU(E(D) - L) + B, E(D) = k log D + C."""
    A, B, k, C = 1.0, 0.01, 0.1, 0.2
    E = lambda D: k * np.log(D) + C  # noqa: E731
    rng = np.random.default_rng(seed)
    Ls = np.linspace(0.0, 1.4, 10)
    rows = []
    for task in ("lab_add_long", "lab_add"):
        for i, L in enumerate(Ls):
            for D in (64, 256, 1024, 4096):
                c = int(rng.binomial(400, min(1.0, A * max(0.0, E(D) - L) + B)))
                rows.append({"task": task, "checkpoint": f"c{i}", "L": L, "D": D, "c": c, "n": 400, "acc": c / 400})
    bases = pd.DataFrame({"checkpoint": [f"c{i}" for i in range(10)], "L": Ls, "seed": 0})
    bases["c_lab_add"] = rng.binomial(400, np.minimum(1.0, A * np.maximum(0.0, E(10.0) - Ls) + B))
    bases["n_lab_add"] = 400
    return pd.DataFrame(rows), bases, E


def test_fit_and_calibration_recover_a_known_law():
    ft, bases, E = _synthetic()
    table = fl.law_table(ft, "lab_add_long")
    assert list(table.columns) == ["checkpoint", "L", "D", "perf", "n"] and len(table) == 40
    fit, _, e = fl.fit_task(ft, "lab_add_long", 10.0, n_boot=40)
    assert fl.verdict_of(fit) in (None, "emergence observed")
    assert e["D0"] == 10.0 and abs(e["E"] - E(10.0)) < 0.15
    assert e["lower"] <= e["E"] <= e["upper"]
    # D0 from the calibration task: its few-shot curve emerges at E(10)
    cal = fl.calibrate(ft, bases, "lab_add", n_boot=40)
    assert cal.get("error") is None, cal.get("error")
    assert 2 < cal["d0"] < 50
    assert abs(cal["observed_fewshot_E"]["E"] - E(10.0)) < 0.1
    # a task that never leaves the floor: no D0 (the leg then falls back to a fixed one)
    flat = ft.assign(c=0, acc=0.0)
    assert fl.calibrate(flat, bases.assign(c_lab_add=0), "lab_add", n_boot=10)["d0"] is None


def test_check_prediction_compares_loss_with_the_interval_and_score_with_the_floor():
    pred = {"few_shot_emergence": {"E": 0.30, "lower": 0.25, "upper": 0.35}, "d0": 20.0,
            "fit": {"params": {"B": 0.0}}, "verdict": "emergence observed"}
    big = pd.DataFrame({"checkpoint": ["xl-s0", "xl-s1", "xl-s2"], "seed": [0, 1, 2], "L": [0.10, 0.30, 0.50],
                        "c_t": [100, 3, 0], "n_t": [256, 256, 256]})
    res = fl.check_prediction(pred, big, "t", margin=0.05, lab_pu={"xl-s0": 0.4})
    r0, r1, r2 = res["per_seed"]
    assert (r0["predicted"], r0["observed"], r0["agree"]) == ("emerged", "emerged", True)
    assert (r1["predicted"], r1["observed"], r1["agree"]) == ("undecided", "not emerged", None)
    assert (r2["predicted"], r2["observed"], r2["agree"]) == ("not emerged", "not emerged", True)
    assert r0["lab_pu"] == 0.4 and r0["L_below_E"] is True and r2["L_below_E"] is False
    assert res["agree"] == 2 and res["decided"] == 2 and res["any_emerged"]
    none = fl.check_prediction({"few_shot_emergence": None, "verdict": "no emergence in range"}, big, "t")
    assert {r["predicted"] for r in none["per_seed"]} == {"no prediction"} and none["decided"] == 0


# ---------------------------------------------------------------- end to end

def _tiny_lab():
    from lm_eval_ext.lab.ladder import Size, TrainSettings
    from lm_eval_ext.lab.pipeline import LabConfig

    cfg = LabConfig(sizes=(Size("t8", 8, 1, 2), Size("t12", 12, 1, 2), Size("t16", 16, 1, 2), Size("t20", 20, 1, 2)),
                    seeds=(0,), train=TrainSettings(steps=16, batch_size=16, warmup=4, checkpoint_every=100,
                                                    spec=TaskSpec(n_test=4)),
                    tasks=("lab_add",), primary_task="lab_add", evaluator="adaptive", r=1, cap=1, budget=None,
                    cli_check=False, batch_size=64)
    leg = fl.FinetuneLegConfig(Ds=(1, 2, 4), min_steps=2, epochs=1, batch_size=4, n_eval=8, n_val=32, n_boot=8)
    return cfg, leg


def _run(out, cfg, leg) -> str:
    import torch

    from lm_eval_ext.lab.pipeline import run_lab

    torch.set_num_threads(1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        run_lab(out, cfg, workers=1, finetune=leg)
    return buf.getvalue()


@pytest.mark.slow
def test_finetune_leg_end_to_end_writes_the_prediction_first_and_resumes(tmp_path):
    cfg, leg = _tiny_lab()
    out = tmp_path / "lab"
    log = _run(out, cfg, leg)
    pred_path = out / fl.PREDICTION_FILE
    pred = json.loads(pred_path.read_text())
    # written before the largest model existed: in the log, in the file, and by the clocks
    assert log.index("predicted few-shot emergence") < log.index("4/5 training and scoring the largest")
    assert pred["largest_models_existing_when_written"] == []
    largest = out / "models" / "t20-s0" / "lab_model.json"
    assert largest.stat().st_mtime > pred_path.stat().st_mtime
    # E(D0) (or, where the law finds no emergence, the verdict saying so)
    assert pred["d0"] >= 1 and pred["d0_how"]
    e = pred["few_shot_emergence"]
    assert (e is not None and e["E"] is not None) or "no emergence" in (pred.get("verdict") or "") \
        or (pred.get("verdict") or "").startswith("no fit")
    # every smaller checkpoint has L and was finetuned and scored on every D, for both tasks
    base = json.loads((out / "finetune" / "base" / "t8-s0.json").read_text())
    assert base["L"] > 0 and base["fewshot"]["lab_add_long"]["n"] == 8
    for task in leg.tasks:
        scores = sorted((out / "finetune" / "scores" / task).glob("*.json"))
        assert len(scores) == 3 * 3
        runs = list((out / "finetune" / task).glob("*/*/finetune.json"))
        assert len(runs) == 3 * 3
        man = pd.read_csv(out / "finetune" / task / f"manifest_{task}.csv")
        assert set(man["D"]) == {0, 1, 2, 4} and man["loss"].notna().all()
    # the check and the report
    outcome = json.loads((out / "outcome.json").read_text())
    check = outcome["finetune"]
    assert [r["checkpoint"] for r in check["per_seed"]] == ["t20-s0"]
    assert check["per_seed"][0]["L"] > 0
    report = (out / "report.md").read_text()
    assert "## Finetuning leg: predicted few-shot emergence" in report
    assert report.index("## Finetuning leg") < report.index("## Scaling laws")
    assert f"{check['per_seed'][0]['L']:.4f}" in report
    # rerun: nothing finetuned, scored or fitted again; the prediction is kept
    stamps = {p: p.stat().st_mtime_ns for p in [pred_path, out / "finetune" / fl.FIT_PICKLE,
                                                *(out / "finetune").rglob("finetune.json"),
                                                *(out / "finetune" / "scores").rglob("*.json"),
                                                *(out / "finetune" / "base").glob("*.json")]}
    log2 = _run(out, cfg, leg)
    assert "prediction exists" in log2 and "finetuning" not in log2.replace("finetuning leg", "")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "outcome.json").read_text())["finetune"]["per_seed"] == check["per_seed"]
    # other leg settings in the same directory: refused
    import dataclasses

    with pytest.raises(ValueError, match="finetuning leg with other settings"):
        _run(out, cfg, dataclasses.replace(leg, lr=3e-3))


def test_command_line_options_build_the_leg():
    from lm_eval_ext.lab.__main__ import build_parser, finetune_config
    from lm_eval_ext.lab.pipeline import LabConfig

    parser = build_parser()

    def leg_of(*argv):
        return finetune_config(parser.parse_args(["--output_path", "o", "--finetune", *argv]), cfg)

    cfg = LabConfig()
    assert leg_of() == fl.FinetuneLegConfig()
    leg = leg_of("--ft_task", "lab_count_long", "--ft_calibration_task", "none", "--ft_train_sizes", "256,16,64",
                 "64", "--ft_seeds", "all", "--ft_d0", "8")
    assert (leg.task, leg.calibration_task, leg.Ds, leg.seeds, leg.d0) == ("lab_count_long", None, (16, 64, 256),
                                                                            (0, 1, 2), 8.0)
    assert leg_of("--ft_D", "64,16,32", "--ft_seeds", "1,2").Ds == (16, 32, 64)  # the old spelling
    assert leg_of("--ft_seeds", "1", "2").seeds == (1, 2)
    with pytest.raises(ValueError, match="not seeds of the ladder"):
        leg_of("--ft_seeds", "0,7")
    with pytest.raises(ValueError, match="not 'all' or a list of seeds"):
        leg_of("--ft_seeds", "0,first")
