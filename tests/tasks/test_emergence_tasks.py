"""The emergence tasks (task_configs/emergence): local data, prompt identity
with the finetuning data, the pretraining-loss task, and the real lm_eval CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_ext import task_dir
from lm_eval_ext.tasks.emergence import (FORMATS, load_split, loss_process_results, nll_per_unit, select_docs,
                                        training_example)
from tests.lm_eval_cli import offline_env

TASKS = ["emergence_gsm8k", "emergence_mmlu", "emergence_csqa", "emergence_cola"]
EMERGENCE_DIR = task_dir() / "emergence"

_SENTENCES = ["the cat sat on the mat", "mat the on sat cat the", "she reads two books", "books she two reads",
              "we went home early", "home early went we", "dogs bark at night", "night at bark dogs"]


def write_fixtures(root: Path) -> dict:
    """Small made-up documents for every task (never real benchmark data),
    ``root/<task>/<role>.jsonl``, and a held-out text file for the loss task."""
    def w(task, role, rows):
        (root / task).mkdir(parents=True, exist_ok=True)
        (root / task / f"{role}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    cola = [{"sentence": s, "label": int(i % 2 == 0)} for i, s in enumerate(_SENTENCES * 4)]
    w("cola", "train", cola)
    w("cola", "eval", [{"sentence": s + " today", "label": int(i % 2 == 0)} for i, s in enumerate(_SENTENCES)])
    sums = [{"question": f"Tom has {a} apples and gets {b} more. How many now?",
             "answer": f"He has {a} + {b} = {a + b} apples.\n#### {a + b}"} for a in range(1, 5) for b in range(1, 4)]
    w("gsm8k", "train", sums[:9])
    w("gsm8k", "eval", sums[9:])
    mmlu = [{"question": f"Which colour is item {i}?", "choices": ["red", "green", "blue", f"c{i}"],
             "answer": i % 4, "subject": "high_school_biology"} for i in range(14)]
    w("mmlu", "train", mmlu[:6])
    w("mmlu", "fewshot", mmlu[6:12])
    w("mmlu", "eval", mmlu[12:])
    # CommonsenseQA in the hub's own layout (choices dict, answerKey letter)
    csqa = [{"question": f"Where would you keep thing {i}?",
             "choices": {"label": list("ABCDE"), "text": ["box", "shelf", "drawer", "bag", f"room{i}"]},
             "answerKey": "ABCDE"[i % 5]} for i in range(12)]
    w("csqa", "train", csqa[:9])
    w("csqa", "eval", csqa[9:])
    heldout = root / "heldout.txt"
    heldout.write_text("def add(a, b):\n    return a + b\n\n"
                       "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
                       "for i in range(10):\n    print(i * i)\n")
    return {"emergence_data": str(root), "loss_data": str(heldout)}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("emergence_data"))


def _task_manager(metadata):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(EMERGENCE_DIR), include_defaults=False, metadata=metadata)


def test_tasks_load_local_data_with_paper_shot_counts(fixtures, tiny_model_dir):
    tm = _task_manager({**fixtures, "pretrained": str(tiny_model_dir)})
    tasks = tm.load(TASKS + ["emergence_loss"])["tasks"]
    shots = {t: tasks[t].config.num_fewshot for t in TASKS}
    assert shots == {"emergence_gsm8k": 8, "emergence_mmlu": 5, "emergence_csqa": 6, "emergence_cola": 5}
    assert [len(tasks[t].eval_docs) for t in TASKS] == [3, 2, 3, 8]
    assert tasks["emergence_gsm8k"].config.output_type == "generate_until"
    assert {tasks[t].config.output_type for t in TASKS[1:]} == {"multiple_choice"}
    csqa = list(tasks["emergence_csqa"].eval_docs)
    assert csqa[0]["choices"][4] == "room9" and csqa[0]["answer"] == 4  # hub layout normalised
    assert tasks["emergence_loss"].config.output_type == "loglikelihood_rolling"


@pytest.mark.parametrize("task", TASKS)
def test_finetuning_examples_are_the_prompts_lm_eval_builds(fixtures, task):
    """Zero-shot context == finetuning prompt; the answer continuation == the
    finetuning completion; a k-shot context is made of finetuning texts."""
    tm = _task_manager(fixtures)
    t = tm.load([task])["tasks"][task]
    fmt = FORMATS[task.removeprefix("emergence_")]
    k = t.config.num_fewshot
    for doc in list(t.eval_docs):
        ex = training_example(task, doc)
        assert t.fewshot_context(doc, num_fewshot=0) == ex.prompt
        gold = t.doc_to_target(doc)
        answer = gold if fmt.generative else t.doc_to_choice(doc)[gold]
        end = t.config.fewshot_delimiter if fmt.generative else ""
        assert ex.completion == t.config.target_delimiter + answer + end
        # The shots lm-eval draws, drawn again with the same seed.
        t.sampler.set_rnd(1234)
        shots = t.sampler.sample(n=k)
        t.sampler.set_rnd(1234)
        context = t.fewshot_context(doc, num_fewshot=k)
        desc = fmt.render_description(doc)
        blocks = []
        for s in shots:
            e = training_example(task, s)
            shot_prompt = e.prompt[len(fmt.render_description(s)):]
            blocks.append(shot_prompt + e.completion + ("" if fmt.generative else t.config.fewshot_delimiter))
        assert context == desc + "".join(blocks) + fmt.text(doc)
        assert len(shots) == k


def test_mmlu_description_names_the_subject(fixtures):
    (doc,) = load_split("mmlu", "eval", fixtures["emergence_data"])[:1]
    assert training_example("mmlu", doc).prompt.startswith(
        "The following are multiple choice questions (with answers) about high school biology.\n\n")
    assert FORMATS["mmlu"].render_description({**doc, "subject": ""}).startswith(
        "The following are multiple choice questions (with answers).")


def test_select_docs_first_or_seeded_sample():
    docs = [{"i": i} for i in range(10)]
    assert select_docs(docs, 3) == docs[:3]
    a, b = select_docs(docs, 4, seed=1), select_docs(docs, 4, seed=1)
    assert a == b and len({d["i"] for d in a}) == 4
    assert select_docs(docs, 4, seed=2) != a
    with pytest.raises(ValueError, match="exceeds the 10"):
        select_docs(docs, 11)
    with pytest.raises(ValueError, match="positive integer"):
        select_docs(docs, 0)


@pytest.mark.parametrize("task,row,match", [
    ("gsm8k", {"question": "q", "answer": "42"}, "#### "),
    ("cola", {"sentence": "s", "label": -1}, "'label'"),
    ("mmlu", {"question": "q", "choices": ["a", "b"], "answer": 0}, "'choices'"),
    ("csqa", {"question": "q", "choices": ["a", "b", "c", "d", "e"], "answer": "F"}, "'answer'"),
])
def test_bad_local_rows_name_file_line_and_column(tmp_path, task, row, match):
    (tmp_path / task).mkdir()
    (tmp_path / task / "train.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=rf"train\.jsonl:1: .*{match}"):
        load_split(task, "train", str(tmp_path))


def test_missing_local_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cola/eval\.jsonl"):
        load_split("cola", "eval", str(tmp_path))
    with pytest.raises(ValueError, match="unknown emergence task"):
        load_split("squad", "eval", str(tmp_path))


def test_loss_counts_tokens_with_the_models_tokenizer(fixtures, tiny_model_dir):
    from transformers import AutoTokenizer

    tm = _task_manager({**fixtures, "pretrained": str(tiny_model_dir)})
    t = tm.load(["emergence_loss"])["tasks"]["emergence_loss"]
    docs = list(t.eval_docs)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert len(docs) == 3
    for d in docs:
        assert d["n_tokens"] == len(tok.encode(d["text"])) > 0
        assert d["n_bytes"] == len(d["text"].encode("utf-8"))
    assert t.doc_to_target(docs[0]) == docs[0]["text"]


def test_loss_pools_over_tokens_and_needs_a_tokenizer():
    # two documents: 1 token at -2 nats, 3 tokens at -6 nats -> 8 / 4 = 2 nats per token
    assert nll_per_unit([(-2.0, 1), (-6.0, 3)]) == pytest.approx(2.0)
    r = loss_process_results({"n_tokens": 4, "n_bytes": 10}, [-8.0])
    assert r["nll_per_token"] == (-8.0, 4) and r["nats_per_byte"] == (-8.0, 10)
    with pytest.raises(ValueError, match="pretrained"):
        loss_process_results({"n_tokens": -1, "n_bytes": 10}, [-8.0])


def _reference_nll(model_dir, texts):
    """Sum of token NLLs and token count, computed directly: each text scored
    from the EOS prefix token, as lm-eval's rolling windows do."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok.encode(text)
            x = torch.tensor([[tok.eos_token_id] + ids])
            logp = torch.log_softmax(model(x).logits[0, :-1], -1)
            total -= logp[torch.arange(len(ids)), torch.tensor(ids)].sum().item()
            n += len(ids)
    return total, n


@pytest.mark.slow
def test_lm_eval_cli_validates_and_runs_every_task(fixtures, tiny_model_dir, tmp_path):
    tasks = ",".join(TASKS + ["emergence_loss"])
    proc = subprocess.run([sys.executable, "-m", "lm_eval", "validate", "--tasks", tasks,
                           "--include_path", str(EMERGENCE_DIR)],
                          cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "All tasks found and valid" in proc.stdout
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lm_eval", "run", "--model", "hf",
                           "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--device", "cpu",
                           "--tasks", tasks, "--include_path", str(EMERGENCE_DIR), "--limit", "2",
                           "--log_samples", "--output_path", str(out), "--gen_kwargs", "max_gen_toks=8",
                           "--metadata", json.dumps(fixtures)],
                          cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (results_file,) = out.rglob("results_*.json")
    res = json.loads(results_file.read_text())
    r = res["results"]
    assert 0.0 <= r["emergence_gsm8k"]["exact_match,strict-match"] <= 1.0
    for t in ("emergence_mmlu", "emergence_csqa", "emergence_cola"):
        assert r[t]["acc,none"] in (0.0, 0.5, 1.0)  # 2 documents
    assert "mcc,none" in r["emergence_cola"]
    assert res["n-shot"]["emergence_csqa"] == 6 and res["n-shot"]["emergence_gsm8k"] == 8
    # The loss equals a direct computation on the first 2 held-out documents.
    texts = [d for d in Path(fixtures["loss_data"]).read_text().split("\n\n") if d.strip()][:2]
    nll, n = _reference_nll(tiny_model_dir, [t.strip("\n") for t in texts])
    loss = r["emergence_loss"]
    assert loss["nll_per_token,none"] == pytest.approx(nll / n, rel=1e-4)
    assert loss["token_perplexity,none"] == pytest.approx(math.exp(nll / n), rel=1e-4)
    n_bytes = sum(len(t.strip("\n").encode()) for t in texts)
    assert loss["nats_per_byte,none"] == pytest.approx(nll / n_bytes, rel=1e-4)
    assert loss["bits_per_byte,none"] == pytest.approx(nll / n_bytes / math.log(2), rel=1e-4)
    # The analysis reads the same loss back, under the model name it derives.
    from analysis.ingest import read_results

    df = read_results(out)
    row = df[(df["task"] == "emergence_loss") & (df["metric"] == "nll_per_token")]
    assert list(row["model"]) == [str(tiny_model_dir)]
    assert row["value"].iloc[0] == pytest.approx(nll / n, rel=1e-4)


def test_mcc_matches_sklearn_and_is_zero_for_a_constant_guesser():
    import random

    from sklearn.metrics import matthews_corrcoef as sk_mcc

    from lm_eval_ext.tasks.emergence import matthews_corrcoef

    rng = random.Random(0)
    gold = [rng.randint(0, 1) for _ in range(50)]
    pred = [g if rng.random() < 0.7 else 1 - g for g in gold]
    assert matthews_corrcoef(list(zip(gold, pred))) == pytest.approx(sk_mcc(gold, pred))
    assert matthews_corrcoef([(g, 1) for g in gold]) == 0.0


def test_loss_text_sources(tmp_path):
    from lm_eval_ext.tasks.emergence import load_loss_texts

    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "a b"}\n{"text": "  "}\n{"text": "c"}\n')
    assert load_loss_texts(str(p)) == ["a b", "c"]  # blank documents are dropped
    p.write_text('{"txt": "a"}\n')
    with pytest.raises(ValueError, match=r"t\.jsonl:1: .*'text'"):
        load_loss_texts(str(p))
    with pytest.raises(ValueError, match="hub:PATH"):
        load_loss_texts("hub:")
    with pytest.raises(FileNotFoundError):
        load_loss_texts(str(tmp_path / "missing.txt"))
