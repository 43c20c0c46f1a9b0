"""`python -m analysis scaling` on result directories that this project's own
adaptive PassUntil runs wrote for three tiny local models of different sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.tiny_model import build_tiny_model
from tests.toy_task import write_exact_match_task

TOKENS = [" a", " b", " c", "e", "s", "t", "(", ")", ":", " =", " x", " in"]
SIZES = [dict(n_layer=1, n_embd=32, n_head=2), dict(n_layer=2, n_embd=64, n_head=2),
         dict(n_layer=3, n_embd=96, n_head=4)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from lm_eval_ext.sampling.adaptive import StopRule
    from lm_eval_ext.sampling.runner import run_adaptive

    root = tmp_path_factory.mktemp("ladder")
    rows = [{"prompt": "def f(x):\n    return", "target": TOKENS}, {"prompt": "import", "target": TOKENS[:6]},
            {"prompt": "for i", "target": TOKENS[3:]}, {"prompt": "x", "target": ["NEVER_EVER"]}]
    tasks = write_exact_match_task(root, "toy_passuntil", rows, max_gen_toks=1)
    for i, size in enumerate(SIZES):
        model = build_tiny_model(root / f"model{i}", seed=i, **size)
        run_adaptive("toy_passuntil", "hf", f"pretrained={model},dtype=float32", output_path=root / "runs" / f"m{i}",
                     rule=StopRule(r=2, cap=128, first=16), include_path=tasks, device="cpu", batch_size=64,
                     progress=False)
    return root


@pytest.mark.slow
def test_scaling_cli_end_to_end(runs):
    out = runs / "analysis"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "analysis", "scaling", str(runs / "runs"), "--output_path", str(out),
                           "--predict", "1e6"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "toy_passuntil" in proc.stdout
    png = out / "scaling_toy_passuntil.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "scaling_toy_passuntil.json").read_text())
    assert report["task"] == "toy_passuntil" and report["predictions"][0]["x"] == 1e6
    p = report["predictions"][0]
    assert set(p) == {"model", "x", "observed", "predicted", "lower", "upper", "covered"}
    assert 0 <= p["lower"] <= p["predicted"] <= p["upper"] <= 1
    # the verdict is printed next to the predictions and saved
    assert report["verdict"] in ("follows the law", "bends (accelerating)", "bends (saturating)", "no usable trend")
    assert f"[verdict: {report['verdict']}]" in proc.stdout
    # three sizes: only the law keeps a residual df; the alternatives are
    # fitted and listed, but not compared
    comp = report["curve_comparison"]
    models = {m["model"]: m for m in comp["models"]}
    assert set(models) == {"law", "quadratic", "multi_step", "two_circuit"}
    assert models["two_circuit"]["aic"] is None and comp["lr_pvalue"] is None
    assert comp["best"] == "law" and models["law"]["aic"] is not None
    assert "law vs alternatives" in proc.stdout


@pytest.mark.slow
def test_scaling_cli_bad_input_is_a_clear_error(runs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis", "scaling", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error:" in proc.stderr and "nothing" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "analysis", "scaling", str(runs / "runs"), "--tasks", "nope",
                           "--output_path", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not found" in proc.stderr
