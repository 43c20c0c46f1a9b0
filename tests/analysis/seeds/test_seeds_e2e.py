"""`python -m analysis seeds` end to end: a population of tiny GPT-2s (2 sizes x 4
seeds) trained for a few steps here, each evaluated through the real `lm_eval`
CLI on a tiny local multiple-choice task, then analysed from the result dirs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model
from tests.lm_eval_cli import offline_env, run_parallel

SIZES = {"small": dict(n_layer=1, n_embd=16, n_head=2), "large": dict(n_layer=2, n_embd=48, n_head=2)}
SEEDS = [0, 1, 2, 3]
WORDS = ["red", "blue", "green", "pink", "gold", "gray", "tan", "teal"]
TRAIN_STEPS = 40


def _write_task(root: Path) -> Path:
    """A multiple-choice task "<w> is" -> " <w>" (copy the colour) over local JSONL."""
    rows = [{"query": f"{w} is", "choices": [f" {c}" for c in WORDS[i % 2::2]],
             "gold": WORDS[i % 2::2].index(w)} for i, w in enumerate(WORDS)]
    rows += [{"query": f"the {w} is", "choices": [f" {c}" for c in WORDS[i % 2::2]],
              "gold": WORDS[i % 2::2].index(w)} for i, w in enumerate(WORDS)]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "toy_seeds_mc.yaml").write_text(f"""task: toy_seeds_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
    return tasks


def _train(base: Path, out: Path, seed: int, n_layer: int, n_embd: int, n_head: int) -> int:
    """A GPT-2 of the given shape, initialised from ``seed`` and trained for a few
    steps on "<w> is <w>." (data order from the same seed); returns its size."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(base)
    cfg = GPT2Config.from_pretrained(base, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
        texts = [f"{w} is {w}." for w in WORDS] + [f"the {w} is {w}." for w in WORDS]
        enc = tok(texts, padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(TRAIN_STEPS):
            idx = torch.randint(0, len(texts), (8,))
            loss = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx],
                         labels=labels[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds_pop")
    base = build_tiny_model(root / "base", n_layer=1, n_embd=16, n_head=2, n_positions=32)
    tasks = _write_task(root)
    runs, manifest = [], ["model,N,seed"]
    for name, shape in SIZES.items():
        for seed in SEEDS:
            model_dir = root / "models" / f"{name}-seed{seed}"
            n = _train(base, model_dir, seed, **shape)
            runs.append((model_dir, root / "runs" / f"{name}-seed{seed}"))
            manifest.append(f"{model_dir},{n},{seed}")
    (root / "manifest.csv").write_text("\n".join(manifest) + "\n")
    # Seeds 0-1 through `lm_eval run` as is, seeds 2-3 through lm-eval's own CLI
    # without indexing its built-in tasks (~11 s less per call); two at a time.
    t0 = time.time()
    cmds = []
    for model_dir, out in runs:
        cli = ([sys.executable, "-m", "lm_eval"] if out.name.endswith(("seed0", "seed1"))
               else [sys.executable, "-m", "lm_eval_ext", "lm-eval", "--no_builtin_tasks"])
        cmds.append(cli + ["run", "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32",
                           "--device", "cpu", "--batch_size", "16", "--tasks", "toy_seeds_mc",
                           "--include_path", str(tasks), "--output_path", str(out)])
    run_parallel(cmds, root, env=offline_env(MPLBACKEND="Agg"))
    print(f"lm_eval: {len(runs)} evaluations in {time.time() - t0:.1f} s")
    return root


def _seeds_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "analysis", "seeds", *map(str, args)], capture_output=True,
                          text=True, env=offline_env(MPLBACKEND="Agg"), cwd=cwd, timeout=300)


@pytest.mark.slow
def test_seeds_cli_end_to_end(population):
    root = population
    out = root / "analysis"
    proc = _seeds_cli(root / "runs", "--manifest", root / "manifest.csv", "--metric", "acc", "--n_boot", "500",
                      "--output_path", out, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "toy_seeds_mc" in proc.stdout and "what these data cannot tell" in proc.stdout
    # 4 seeds per size: the output must say the dip test is nearly powerless there
    assert "only 4 seeds" in proc.stdout
    report = json.loads((out / "seeds_toy_seeds_mc_acc.json").read_text())
    assert report["task"] == "toy_seeds_mc" and report["metric"] == "acc"
    assert [s["n_seeds"] for s in report["sizes"]] == [4, 4]
    assert report["sizes"][0]["N"] < report["sizes"][1]["N"]
    assert {m["seed_source"] for m in report["models"]} == {"manifest"}
    assert sorted(m["seed"] for m in report["models"]) == sorted(SEEDS * 2)
    # every run's value is an lm-eval accuracy on 16 items
    for m in report["models"]:
        assert 0 <= m["value"] <= 1 and abs(m["value"] * 16 - round(m["value"] * 16)) < 1e-9
    for s in report["sizes"]:
        assert s["bimodal"] is not None  # 4 seeds: the dip test runs ...
        assert s["bic1"] is None  # ... but no mixture is fitted
        assert 0 <= s["p_success_lower"] <= s["p_success"] <= s["p_success_upper"] <= 1
    assert report["threshold_rule"] in ("given",) or "mixture" in report["threshold_rule"]
    assert report["psuccess_fit"] is not None and report["psuccess_fit"]["df_resid"] == 0
    # accuracies: the means' intervals are built within [0, 1]
    assert report["bounds"] == [0.0, 1.0] and "logit" in report["mean_interval"]
    for s in report["sizes"]:
        if s["mean_lower"] is not None:
            assert 0 <= s["mean_lower"] <= s["mean"] <= s["mean_upper"] <= 1
    # 4 vs 4 runs: C(8,4) = 70 relabelings, the mirror image as extreme: p >= 2/70, below 0.05
    assert report["sizes"][0]["wasserstein_min_pvalue"] == pytest.approx(2 / 70)
    assert not any("cannot reach" in w and "permutation" in w for w in report["warnings"])
    # the "sizes, not runs" verdict is reported either way (text or null) and printed when it applies
    assert "sizes_not_runs" in report
    if report["sizes_not_runs"]:
        assert report["sizes_not_runs"] in proc.stdout
    png = out / "seeds_toy_seeds_mc_acc.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_seeds_cli_seed_from_model_path_and_size_from_results(population, tmp_path, capsys):
    """No manifest: the seed is parsed from the model path (".../small-seed3"),
    N is lm-eval's recorded model_num_parameters; an explicit threshold is used
    as given.  (In-process `main`: the subprocess path is tested above.)"""
    from analysis.cli import main

    root = population
    rc = main(["seeds", str(root / "runs"), "--metric", "acc", "--threshold", "0.5", "--n_boot", "200",
               "--output_path", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err[-3000:]
    report = json.loads((tmp_path / "seeds_toy_seeds_mc_acc.json").read_text())
    assert {m["seed_source"] for m in report["models"]} == {"name"}
    assert report["threshold"] == 0.5 and report["threshold_rule"] == "given"
    manifest = {line.split(",")[0]: float(line.split(",")[1])
                for line in (root / "manifest.csv").read_text().splitlines()[1:]}
    for m in report["models"]:
        assert m["N"] == manifest[m["model"]]
        assert m["seed"] == int(Path(m["model"]).name.rsplit("seed", 1)[1])
        assert (m["value"] >= 0.5) == next(r["success"] for r in report["runs"]
                                            if r["N"] == m["N"] and r["seed"] == m["seed"])
    # a run directory whose model name carries no seed is refused, naming it
    stray = tmp_path / "stray"
    shutil.copytree(root / "runs" / "small-seed0", stray)
    for f in stray.rglob("results_*.json"):  # model_args is a dict or a string: edit the text
        f.write_text(f.read_text().replace("small-seed0", "small-noseed"))
    capsys.readouterr()
    rc = main(["seeds", str(root / "runs"), str(stray), "--metric", "acc", "--output_path", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "no seed for these runs" in err and "small-noseed" in err
