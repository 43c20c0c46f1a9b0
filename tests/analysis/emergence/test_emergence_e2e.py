"""Issue 4's end-to-end acceptance on tiny local models: a finetuning sweep
(2 checkpoints x 3 values of D) through ``lm-eval-ext finetune-sweep``, every
model evaluated through the real ``lm_eval`` CLI (the task and the
pretraining-loss task), then ``python -m analysis emergence`` on the result
directory with the sweep's manifest."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lm_eval_ext import task_dir
from tests.tasks.test_emergence_tasks import write_fixtures
from tests.lm_eval_cli import offline_env, run_parallel

D_VALUES = [2, 4, 8]


def _pretrain_further(src: Path, dst: Path, steps: int = 30) -> Path:
    """A later checkpoint of the same model: more language-model training on
    code (the held-out text of the loss task is code), so its loss L is lower."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny_model import humaneval_corpus

    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    ids = tok.encode("\n\n".join(humaneval_corpus()[:40]))
    blocks = torch.tensor([ids[i:i + 128] for i in range(0, len(ids) - 128, 128)][:64])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        x = blocks[torch.randint(len(blocks), (8,), generator=g)]
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


@pytest.mark.slow
def test_finetune_sweep_lm_eval_and_emergence_fit(tiny_model_dir, tmp_path):
    t0 = time.monotonic()
    data = write_fixtures(tmp_path / "data")
    early = Path(tiny_model_dir)
    late = _pretrain_further(early, tmp_path / "late")
    ck_csv = tmp_path / "checkpoints.csv"
    ck_csv.write_text(f"checkpoint,path\nearly,{early}\nlate,{late}\n")  # L comes from the loss task

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lm_eval_ext", "finetune-sweep", "--checkpoints", str(ck_csv), "--task", "cola",
           "--train_sizes", ",".join(map(str, D_VALUES)), "--steps", "2", "--train_batch_size", "2", "--lr", "1e-3",
           "--data", data["emergence_data"], "--output_path", str(sweep)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "trained 6, already done 0" in proc.stdout
    t_sweep = time.monotonic()
    manifest = sweep / "manifest_cola.csv"
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["checkpoint"], int(r["D"])) for r in rows) == sorted(
        (c, d) for c in ("early", "late") for d in [0, *D_VALUES])

    # Evaluate every model of the manifest through the real lm_eval CLI: the
    # base checkpoints with `lm_eval run` as is, the finetuned ones through
    # `lm-eval-ext lm-eval --no_builtin_tasks run` (lm-eval's own CLI without
    # indexing its ~12,000 built-in YAMLs, ~11 s less per call); one base
    # checkpoint also goes both ways and must give the same numbers.
    results = tmp_path / "results"
    include = str(task_dir() / "emergence")
    plain = [sys.executable, "-m", "lm_eval"]
    fast = [sys.executable, "-m", "lm_eval_ext", "lm-eval", "--no_builtin_tasks"]

    def lm_eval_cmd(cli, model, tasks, out):
        return cli + ["run", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
                      "--device", "cpu", "--tasks", tasks, "--include_path", include, "--batch_size", "8",
                      "--output_path", str(out), "--metadata", json.dumps(data)]

    cmds = []
    for i, r in enumerate(rows):
        base = r["D"] == "0"
        cmds.append(lm_eval_cmd(plain if base else fast, r["model"],
                                "emergence_cola,emergence_loss" if base else "emergence_cola", results / f"run{i}"))
    early = next(r for r in rows if r["D"] == "0" and r["checkpoint"] == "early")
    cmds.append(lm_eval_cmd(fast, early["model"], "emergence_cola,emergence_loss", tmp_path / "check"))
    run_parallel(cmds, tmp_path)
    t_eval = time.monotonic()

    out = tmp_path / "fit"
    proc = subprocess.run([sys.executable, "-m", "analysis", "emergence", str(results), "--manifest", str(manifest),
                           "--floor", "0.5", "--n_boot", "10", "--output_path", str(out)],
                          cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout[-2500:])
    print(f"pretrain + sweep {t_sweep - t0:.1f} s, {len(cmds)} lm_eval runs {t_eval - t_sweep:.1f} s, "
          f"fit {time.monotonic() - t_eval:.1f} s")
    report = json.loads((out / "emergence_emergence_cola.json").read_text())
    assert (out / "emergence_emergence_cola.png").is_file()
    table = report["rows"]
    assert len(table) == 8  # 2 base checkpoints (few-shot, D = 0) + 2 x 3 finetuned
    assert {r["n"] for r in table} == {8}  # every model scored on all 8 eval sentences
    L = {r["checkpoint"]: r["L"] for r in table}
    assert L["late"] < L["early"] - 0.3, L  # the later checkpoint's pretraining loss, from emergence_loss
    # ... and L is exactly what lm_eval wrote for the base checkpoint
    from analysis.ingest import read_results

    res = read_results(results)
    check = read_results(tmp_path / "check").set_index(["task", "metric"])["value"]
    same = res[res["model"] == early["model"]].set_index(["task", "metric"])["value"]
    assert len(check) >= 4 and check.sort_index().equals(same.sort_index()), (check, same)
    loss = res[(res["task"] == "emergence_loss") & (res["metric"] == "nll_per_token")].set_index("model")["value"]
    assert loss[str(late.resolve())] == pytest.approx(L["late"])
    fit = report["fit"]
    assert fit["kind"] == "law" and fit["nobs"] == 6 and fit["n_checkpoints"] == 2
    assert set(fit["params"]) >= {"A", "k", "alpha", "C"}
    assert fit["floor"] == 0.5
