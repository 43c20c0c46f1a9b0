"""Finetuning on emergence-task examples (lm_eval_ext.finetune.train) and the
resumable sweep with its manifest (lm_eval_ext.finetune.sweep)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lm_eval_ext.tasks.emergence import Example, training_examples
from lm_eval_ext.finetune.train import FinetuneConfig, answer_loss, encode_example, finetune, read_record
from lm_eval_ext.finetune.sweep import make_checkpoint, manifest_path, read_checkpoint_table, run_sweep
from tests.tasks.test_emergence_tasks import write_fixtures


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("ft_data"))["emergence_data"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_encode_example_trains_on_the_answer_only(tokenizer):
    ex = Example(prompt="def f(x):\n    return", completion=" x + 1")
    ids, labels = encode_example(tokenizer, ex, max_length=512)
    whole = tokenizer(ex.prompt + ex.completion)["input_ids"]
    n_prompt = len(tokenizer(ex.prompt)["input_ids"])
    assert ids == whole and len(labels) == len(ids)
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == whole[n_prompt:] and n_prompt < len(whole)
    # too long: the prompt is cut from the left, the answer survives
    ids2, labels2 = encode_example(tokenizer, ex, max_length=len(whole) - n_prompt + 1)
    assert ids2 == whole[-(len(whole) - n_prompt + 1):]
    assert labels2[1:] == whole[n_prompt:] and labels2[0] == -100


def test_config_validation_and_step_count():
    assert FinetuneConfig(task="cola", D=20, batch_size=8, epochs=2).total_steps == 5  # ceil(40 / 8)
    assert FinetuneConfig(task="cola", D=20, steps=7).total_steps == 7
    with pytest.raises(ValueError, match="unknown emergence task"):
        FinetuneConfig(task="squad", D=4)
    with pytest.raises(ValueError, match="D must be"):
        FinetuneConfig(task="cola", D=0)
    with pytest.raises(ValueError, match="sample"):
        FinetuneConfig(task="cola", D=4, sample="last")
    hp = FinetuneConfig(task="cola", D=4, lora=True, lora_target=("c_attn",)).hyperparameters()
    assert hp["lora"] is True and hp["lora_target"] == "c_attn" and "D" not in hp


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_finetuning_lowers_the_answer_loss(tiny_model_dir, data_dir, tmp_path, lora):
    from transformers import AutoModelForCausalLM

    examples = training_examples("cola", 16, source=data_dir)
    before = answer_loss(tiny_model_dir, examples)
    # LoRA trains far fewer weights: it needs a larger step to move as far in 12 steps
    cfg = FinetuneConfig(task="cola", D=16, lr=3e-2 if lora else 3e-3, steps=12, batch_size=8, lora=lora,
                         lora_r=8)
    out = tmp_path / "ft"
    res = finetune(tiny_model_dir, out, cfg, data_source=data_dir, progress=False)
    after = answer_loss(out, examples)
    assert len(res.losses) == 12 and res.train_tokens > 0
    assert res.losses[-1] < res.losses[0] - 0.5
    assert after < before - 0.5, (before, after)
    rec = read_record(out)
    assert rec["D"] == 16 and rec["hyperparameters"]["lora"] is lora and rec["losses"] == res.losses
    # A plain HF checkpoint (LoRA merged): no adapter files, loads without peft.
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(FileExistsError):
        finetune(tiny_model_dir, out, cfg, data_source=data_dir, progress=False)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_resumes_and_writes_the_manifest(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    import lm_eval_ext.finetune.sweep as sweep
    from analysis.ingest import read_manifest

    import shutil

    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    cks = [make_checkpoint("a", str(tiny_model_dir), loss=6.2, flops="1e12"),
           make_checkpoint("b", str(other), loss=5.9)]
    with pytest.raises(ValueError, match="same model"):
        run_sweep([cks[0], make_checkpoint("c", str(tiny_model_dir))], [2], tmp_path / "x", FinetuneConfig(
            task="cola", D=1), data_source=data_dir, progress=False)
    cfg = FinetuneConfig(task="cola", D=1, steps=1, batch_size=2, lr=1e-4)
    out = tmp_path / "sweep"
    real = sweep.finetune
    calls = []

    def dies_on_third(*args, **kwargs):  # the run is "killed" while finetuning its third model
        calls.append(args[1])
        if len(calls) == 3:
            Path(args[1]).parent.mkdir(parents=True, exist_ok=True)
            (Path(args[1]).parent / ".tmp-half-written").mkdir()
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "finetune", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cks, [2, 4], out, cfg, data_source=data_dir, progress=False)
    rows = _rows(manifest_path(out, "cola"))
    assert sorted((r["checkpoint"], r["D"]) for r in rows) == [("a", "0"), ("a", "2"), ("a", "4"), ("b", "0")]

    calls.clear()
    monkeypatch.setattr(sweep, "finetune", real)
    rep = run_sweep(cks, [2, 4], out, cfg, data_source=data_dir, progress=False)
    assert [p.name for p in rep.trained] == ["cola-D2-s0", "cola-D4-s0"]  # only checkpoint b's runs
    assert all(p.parent.name == "b" for p in rep.trained) and len(rep.skipped) == 2
    assert not list(out.rglob(".tmp-*"))  # the half-written directory was removed, never counted

    man = read_manifest(manifest_path(out, "cola"))
    assert len(man) == 6 and man["model"].is_unique
    assert set(man["task"]) == {"emergence_cola"}  # the lm-eval task to evaluate them on
    assert sorted(man["D"]) == [0, 0, 2, 2, 4, 4]
    base = man[man["D"] == 0].set_index("checkpoint")
    assert list(base["model"]) == [str(Path(tiny_model_dir).resolve()), str(other.resolve())]
    assert base.loc["a", "loss"] == 6.2 and base.loc["a", "flops"] == 1e12
    tuned = man[man["D"] > 0]
    assert (tuned["loss"].to_numpy() == tuned["checkpoint"].map({"a": 6.2, "b": 5.9}).to_numpy()).all()
    for m, d in zip(tuned["model"], tuned["D"]):
        assert Path(m).is_absolute() and read_record(m)["D"] == d
    assert set(tuned["steps"]) == {1} and set(tuned["lr"]) == {1e-4} and set(tuned["seed"]) == {0}

    # everything done: a third run trains nothing; other settings are refused, not mixed in
    assert run_sweep(cks, [2, 4], out, cfg, data_source=data_dir, progress=False).trained == []
    with pytest.raises(ValueError, match="different settings"):
        run_sweep(cks, [2], out, FinetuneConfig(task="cola", D=1, steps=2, batch_size=2, lr=1e-4),
                  data_source=data_dir, progress=False)


def test_checkpoint_table_errors_name_the_row(tmp_path):
    p = tmp_path / "ck.csv"
    p.write_text("checkpoint,path,loss\nsmall,/m/small,3.1\nbig,/m/big,abc\n")
    with pytest.raises(ValueError, match=r"ck\.csv: row 3: .*loss = 'abc'"):
        read_checkpoint_table(p)
    p.write_text("checkpoint,loss\nsmall,3.1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_checkpoint_table(p)
    p.write_text("checkpoint,path\nbad/label,/m\n")
    with pytest.raises(ValueError, match="label"):
        read_checkpoint_table(p)
