"""Tests for the tiny GPT-2 fixture, including a run through the real lm_eval CLI."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.tiny_model import (  # noqa: F401  (tiny_model_dir is a fixture)
    EOS_TOKEN,
    MARKER_NAME,
    build_tiny_model,
    tiny_model_dir,
)

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _load_state_dict(model_dir: pathlib.Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_reload_and_sample(tiny_model_dir: pathlib.Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    model.eval()

    # Special tokens agree between tokenizer, model config and generation config.
    assert tok.eos_token == tok.bos_token == tok.pad_token == EOS_TOKEN
    assert tok.eos_token_id == tok.pad_token_id == 0
    for cfg in (model.config, model.generation_config):
        assert cfg.eos_token_id == cfg.bos_token_id == cfg.pad_token_id == 0
    assert len(tok) == model.config.vocab_size == 512
    assert tok.model_max_length == model.config.n_positions == 512

    # The BPE was trained on HumanEval: Python keywords are single tokens and
    # byte-level encoding round-trips arbitrary text.
    assert tok.tokenize("def") == ["def"]
    src = "def add(a, b):\n    return a + b  # ünïcødé\n"
    ids = tok(src)["input_ids"]
    assert tok.decode(ids) == src
    assert len(ids) < len(src.encode())

    enc = tok("def is_even(n):\n", return_tensors="pt")
    torch.manual_seed(1234)
    with torch.no_grad():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=1.0,
            max_new_tokens=8,
            min_new_tokens=8,  # random weights: do not stop on an early EOS
            pad_token_id=tok.pad_token_id,
        )
    new_tokens = out[0, enc["input_ids"].shape[1] :]
    assert new_tokens.shape[0] == 8
    text = tok.decode(new_tokens, skip_special_tokens=True)
    assert isinstance(text, str) and text != ""


def test_build_is_deterministic_and_cached(tmp_path: pathlib.Path) -> None:
    import torch

    a = build_tiny_model(tmp_path / "a", seed=0)
    b = build_tiny_model(tmp_path / "b", seed=0)
    c = build_tiny_model(tmp_path / "c", seed=1)
    sd_a, sd_b, sd_c = (_load_state_dict(d) for d in (a, b, c))
    assert sd_a.keys() == sd_b.keys()
    for name in sd_a:
        assert torch.equal(sd_a[name], sd_b[name]), name
    key = "transformer.h.0.attn.c_attn.weight"
    assert not torch.equal(sd_a[key], sd_c[key])
    # Same tokenizer for every seed (it depends on the corpus only).
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()

    # Cached: a second call with the same args does not rewrite anything.
    before = {p.name: p.stat().st_mtime_ns for p in a.iterdir()}
    assert build_tiny_model(a, seed=0) == a
    assert {p.name: p.stat().st_mtime_ns for p in a.iterdir()} == before

    # Different args in the same directory: rebuilt, marker updated.
    build_tiny_model(a, seed=1)
    assert json.loads((a / MARKER_NAME).read_text())["args"]["seed"] == 1
    assert torch.equal(
        _load_state_dict(a)["transformer.wte.weight"], sd_c["transformer.wte.weight"]
    )

    # A foreign, non-empty directory is never clobbered.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_tiny_model(foreign)
    assert (foreign / "keep.txt").read_text() == "x"


TASK_YAML = """\
task: tiny_sampling
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
repeats: 3
generation_kwargs:
  until: ["\\nclass", "\\ndef"]
  do_sample: true
  temperature: 1.0
  max_gen_toks: 16
# The default filter (take_first) would keep only the first of the repeats;
# take_first_k with k == repeats keeps them all.
filter_list:
  - name: all_repeats
    filter:
      - function: take_first_k
        k: 3
process_results: !function utils.process_results
metric_list:
  - metric: n_resps
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

TASK_UTILS = """\
def process_results(doc, results):
    # One request per doc; its filtered response is the list of all repeats.
    (resps,) = results
    return {"n_resps": len(resps)}
"""

DOCS = [
    {"prompt": "def add(a, b):\n", "target": "    return a + b\n"},
    {"prompt": "def is_even(n):\n", "target": "    return n % 2 == 0\n"},
    {"prompt": "def square(x):\n", "target": "    return x * x\n"},
]


def test_lm_eval_cli_generate_until_with_repeats(
    tiny_model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    data_file = task_dir / "docs.jsonl"
    data_file.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    # data_files must be absolute: relative paths resolve against the CWD.
    (task_dir / "tiny_sampling.yaml").write_text(
        TASK_YAML.format(data_file=json.dumps(str(data_file.resolve())))
    )
    (task_dir / "utils.py").write_text(TASK_UTILS)
    out_dir = tmp_path / "out"

    cmd = [
        sys.executable, "-m", "lm_eval", "run",
        "--model", "hf",
        "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
        "--tasks", "tiny_sampling",
        "--include_path", str(task_dir),
        "--device", "cpu",
        "--batch_size", "1",
        "--limit", "2",
        "--log_samples",
        "--output_path", str(out_dir),
    ]  # fmt: skip
    env = {
        **os.environ,
        **OFFLINE_ENV,
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets_cache"),
    }
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (
        f"lm_eval failed ({proc.returncode})\n"
        f"STDOUT:\n{proc.stdout[-5000:]}\nSTDERR:\n{proc.stderr[-20000:]}"
    )

    results_files = sorted(out_dir.rglob("results_*.json"))
    samples_files = sorted(out_dir.rglob("samples_tiny_sampling_*.jsonl"))
    assert len(results_files) == 1, list(out_dir.rglob("*"))
    assert len(samples_files) == 1, list(out_dir.rglob("*"))

    results = json.loads(results_files[0].read_text())
    assert results["results"]["tiny_sampling"]["n_resps,all_repeats"] == 3
    assert results["configs"]["tiny_sampling"]["repeats"] == 3

    lines = samples_files[0].read_text().splitlines()
    samples = [json.loads(line) for line in lines if line.strip()]
    assert sorted(s["doc_id"] for s in samples) == [0, 1]
    for s in samples:
        # One request per doc, holding the 3 sampled repeats.
        assert len(s["resps"]) == 1 and len(s["resps"][0]) == 3
        assert all(isinstance(r, str) for r in s["resps"][0])
        assert s["filtered_resps"] == s["resps"]
        assert s["filter"] == "all_repeats"
        assert s["n_resps"] == 3
        # The samples writer reshapes (context, gen_kwargs) request args into
        # {"gen_args_<i>": {"arg_0": context, "arg_1": gen_kwargs}}.
        gen_kwargs = s["arguments"]["gen_args_0"]["arg_1"]
        assert gen_kwargs["do_sample"] is True
        assert gen_kwargs["temperature"] == 1.0
        assert gen_kwargs["max_gen_toks"] == 16
