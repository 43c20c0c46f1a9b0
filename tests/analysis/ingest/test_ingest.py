"""analysis.ingest: lm-eval results, PassUntil samples and manifests into tidy tables.

Hand-written fixtures in the exact formats (v0.4, v0.3, our samples JSONL) run
everywhere; the real public data under ../shared/data is used where present.
"""

from __future__ import annotations

import json
import re
import math
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.ingest import (
    attach_sizes,
    detect_format,
    read_instances,
    read_manifest,
    read_results,
    tidy_table,
)

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
MAMBA = DATA / "lm_eval_v04" / "mamba2_results"
ASDIV = DATA / "lm_eval_v04" / "asdiv_samples"
PYTHIA_TAR = DATA / "pythia_evals" / "pythia_v1_evals.tar.gz"
PYTHIA_TIDY = DATA / "pythia_evals" / "pythia_v1_evals_tidy.csv.gz"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path


# ---------------------------------------------------------------- fixtures in the exact formats

def _v04(model_args="pretrained=org/tiny-1m", n_params=1_000_000, results=None, nshot=None, **top):
    results = results or {"arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.01,
                                       "acc_norm,none": 0.25, "acc_norm_stderr,none": "N/A"}}
    return {"results": results, "group_subtasks": {t: [] for t in results},
            "configs": {t: {"task": t} for t in results}, "versions": {t: 1.0 for t in results},
            "n-shot": nshot or {t: 0 for t in results},
            "config": {"model": "hf", "model_args": model_args, "model_num_parameters": n_params},
            **top}


def _v03(model_args="pretrained=EleutherAI/pythia-70m,revision=step1000", shots=0):
    return {"results": {"lambada_openai": {"ppl": 140.0, "ppl_stderr": 6.0, "acc": 0.18, "acc_stderr": 0.005}},
            "versions": {"lambada_openai": 0},
            "config": {"model": "hf-causal", "model_args": model_args, "num_fewshot": shots}}


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_v04_fixture_rows_stderr_and_skips(tmp_path):
    _write(tmp_path / "org__tiny-1m" / "results_2026-01-01T00-00-00.000001.json", _v04())
    (tmp_path / "org__tiny-1m" / "passuntil_state.json").write_text('{"round": 3}')  # not results: ignored
    (tmp_path / "notes.json").write_text("not json at all")  # not named results_*: ignored
    df = read_results(tmp_path)
    assert list(df["metric"]) == ["acc", "acc_norm"]  # alias skipped, stderr folded in
    acc = df.set_index("metric").loc["acc"]
    assert acc["model"] == "org/tiny-1m" and acc["filter"] == "none" and acc["format"] == "v0.4"
    assert acc["value"] == 0.5 and acc["stderr"] == 0.01 and acc["n_params"] == 1e6 and acc["num_fewshot"] == 0
    assert math.isnan(df.set_index("metric").loc["acc_norm", "stderr"])  # "N/A" -> NaN


def test_v04_passuntil_filter_and_model_name_fallbacks(tmp_path):
    res = {"passuntil_humaneval": {"alias": "passuntil_humaneval", "pu,passuntil": 0.1,
                                   "pu_stderr,passuntil": 0.05, "pu_interval,passuntil": 2}}
    _write(tmp_path / "a" / "results_2026-01-01T00-00-00.json",
           _v04(model_args="pretrained=org/m,revision=step5", results=res))
    _write(tmp_path / "b" / "results_2026-01-01T00-00-00.json",
           _v04(model_args=None, n_params=None, results=res, model_name="from/model_name"))
    df = read_results(tmp_path)
    assert set(df["model"]) == {"org/m@step5", "from/model_name"}
    pu = df[(df.metric == "pu") & (df.model == "org/m@step5")].iloc[0]
    assert pu["filter"] == "passuntil" and pu["stderr"] == 0.05
    assert df[df.model == "from/model_name"]["n_params"].isna().all()


def test_not_results_json_named_explicitly_is_an_error(tmp_path):
    bad = _write(tmp_path / "other.json", {"hello": 1})
    with pytest.raises(ValueError, match=r"other\.json: no 'results' mapping"):
        read_results(bad)
    odd = _write(tmp_path / "odd.json", {"results": {"t": {"acc": 1.0}}, "config": {"model": "hf"}})
    with pytest.raises(ValueError, match=r"odd\.json: .*neither the v0\.4 shape"):
        read_results(odd)
    broken = tmp_path / "d" / "results_2026-01-01T00-00-00.json"
    broken.parent.mkdir()
    broken.write_text('{"results": ')
    with pytest.raises(ValueError, match=r"results_2026-01-01T00-00-00\.json:1: not valid JSON"):
        read_results(tmp_path / "d")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no lm-eval results"):
        read_results(tmp_path / "empty")


def test_detect_format():
    assert detect_format(_v04()) == "v0.4"
    assert detect_format(_v03()) == "v0.3"
    assert detect_format({"rounds": 3}) is None


def test_v03_fixture_model_name_has_revision(tmp_path):
    df = read_results(_write(tmp_path / "70m_step1000.json", _v03()))
    assert set(df["model"]) == {"EleutherAI/pythia-70m@step1000"}
    assert set(df["format"]) == {"v0.3"} and set(df["filter"]) == {"none"}
    assert df.set_index("metric").loc["acc", "stderr"] == 0.005
    assert df["n_params"].isna().all()


def test_duplicate_runs_error_names_both_files_and_last_keeps_newest(tmp_path):
    old = _write(tmp_path / "r1" / "results_2026-01-01T00-00-00.json", _v04())
    newer = _v04(results={"arc_easy": {"acc,none": 0.75, "acc_stderr,none": 0.02}})
    new = _write(tmp_path / "r2" / "results_2026-02-01T00-00-00.json", newer)
    with pytest.raises(ValueError) as exc:
        read_results(tmp_path)
    assert str(old) in str(exc.value) and str(new) in str(exc.value) and "on_duplicate" in str(exc.value)
    with pytest.warns(UserWarning, match="the newest file is used, not " + re.escape(str(old))):
        df = read_results(tmp_path, on_duplicate="last")
    acc = df[df.metric == "acc"]
    assert len(acc) == 1 and acc.iloc[0]["value"] == 0.75 and acc.iloc[0]["file"] == str(new)
    # acc_norm only in the old file: kept, not a duplicate
    assert df[df.metric == "acc_norm"].iloc[0]["file"] == str(old)
    with pytest.raises(ValueError, match="on_duplicate"):
        read_results(tmp_path, on_duplicate="first")
    # what the CLIs read (analysis.ingest.load): the newest file, with the warning
    from analysis.ingest import load

    with pytest.warns(UserWarning, match="newest file is used"):
        scores = load(tmp_path)
    assert scores.loc[scores.metric == "acc", "score"].tolist() == [0.75]


def test_zero_and_five_shot_are_not_duplicates(tmp_path):
    _write(tmp_path / "zero.json", _v03(shots=0))
    _write(tmp_path / "five.json", _v03(shots=5))
    df = read_results(tmp_path)
    assert sorted(df[df.metric == "acc"]["num_fewshot"]) == [0, 5]


# ---------------------------------------------------------------- real data

def test_mamba2_v04_real_files():
    df = read_results(_need(MAMBA))
    sizes = df.groupby("model")["n_params"].first().sort_values()
    assert len(sizes) == 4 and sizes.notna().all()
    assert 1.2e8 < sizes.iloc[0] < 1.4e8 and 2.6e9 < sizes.iloc[-1] < 2.8e9
    assert list(sizes.index) == [f"state-spaces/mamba2-{s}" for s in ("130m", "780m", "1.3b", "2.7b")]
    acc = df[df.metric == "acc"]
    assert acc["value"].between(0, 1).all() and acc["stderr"].between(0, 0.1).all()
    assert set(df["format"]) == {"v0.4"} and "mmlu" in set(df["task"])  # group with metrics kept
    lam = acc[acc.task == "lambada_openai"].set_index("model")["value"]
    assert lam["state-spaces/mamba2-130m"] < lam["state-spaces/mamba2-2.7b"]


def test_pythia_v03_real_files_match_readme_and_tidy_csv(tmp_path):
    with tarfile.open(_need(PYTHIA_TAR)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: refuse odd members
            tar.extractall(tmp_path, filter="data")
        else:
            tar.extractall(tmp_path)
    df = read_results(tmp_path)
    assert set(df["format"]) == {"v0.3"}
    lam = df[(df.task == "lambada_openai") & (df.metric == "acc") & (df.num_fewshot == 0)].set_index("model")
    v70, v12 = lam.loc["EleutherAI/pythia-v1.1-70m@step143000", "value"], lam.loc["EleutherAI/pythia-v1.1-12b@step143000", "value"]
    assert v70 == pytest.approx(0.185, abs=0.001) and v12 == pytest.approx(0.705, abs=0.001)
    if PYTHIA_TIDY.exists():
        tidy = pd.read_csv(PYTHIA_TIDY)
        ref = tidy[(tidy.task == "lambada_openai") & (tidy.metric == "acc") & (tidy.step == 143000)
                   & (tidy.num_fewshot == 0)].set_index("model")["value"]
        assert v70 == pytest.approx(ref["pythia-70m"], rel=1e-9)
        assert v12 == pytest.approx(ref["pythia-12b"], rel=1e-9)
        assert len(df) == len(tidy)  # every measurement read, none dropped or doubled


def test_asdiv_real_samples_are_not_passuntil():
    with pytest.raises(ValueError, match=r"samples_asdiv_.*\.jsonl:1: .*not a PassUntil task's samples"):
        read_instances(_need(ASDIV))


# ---------------------------------------------------------------- samples

def _samples(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_read_instances_adaptive_format(tmp_path):
    d = tmp_path / "pretrained=org__m"
    _write(d / "results_2026-01-01T00-00-00.000001.json", _v04(model_args="pretrained=org/m"))
    _samples(d / "samples_passuntil_humaneval_2026-01-01T00-00-00.000001.jsonl", [
        {"doc_id": 0, "n_samples": 24, "n_passed": 2, "pu": 1 / 11, "pu_stop": "r_passes", "pu_K": 12, "pu_r": 2,
         "filtered_resps": [["failed"] * 22 + ["passed"] * 2]},
        {"doc_id": 1, "n_samples": 10000, "n_passed": 0, "pu": 0.0, "pu_stop": "cap", "pu_K": None, "pu_r": 2}])
    df = read_instances(tmp_path)
    assert list(df.columns) == ["model", "task", "instance", "n", "c", "pu", "K", "r", "stop", "file"]
    assert list(df["pu"]) == [1 / 11, 0.0]  # the engine's estimate, read as written
    assert list(df["model"]) == ["org/m"] * 2 and list(df["task"]) == ["passuntil_humaneval"] * 2
    assert list(df["n"]) == [24, 10000] and list(df["c"]) == [2, 0] and df["n"].dtype == np.int64
    assert df["K"].iloc[0] == 12 and pd.isna(df["K"].iloc[1]) and list(df["stop"]) == ["r_passes", "cap"]


def test_read_instances_lm_eval_cli_format_and_dir_name_fallback(tmp_path):
    # What `lm_eval run ... --tasks passuntil_humaneval --log_samples` writes (no pu_K/pu_r/pu_stop).
    rec = {"doc_id": 0, "doc": {"task_id": "HumanEval/0"}, "target": "check(f)", "arguments": {},
           "resps": [["x"] * 10], "filtered_resps": [["passed"] * 3 + ["failed"] * 7], "filter": "passuntil",
           "metrics": ["pu", "n_samples"], "doc_hash": "h", "prompt_hash": "h", "target_hash": "h",
           "pu": 0.3, "pass@1": 0.3, "pu_censored": 0, "pu_interval": [0.07, 0.65], "n_samples": 10, "n_passed": 3}
    _samples(tmp_path / "my_model" / "samples_passuntil_humaneval_2026-03-04T05-06-07.891011.jsonl",
             [rec, {**rec, "doc_id": 1, "n_passed": 0}])
    df = read_instances(tmp_path)
    assert list(df["model"]) == ["my_model"] * 2  # no results JSON: directory name
    assert list(df["instance"]) == [0, 1] and list(df["c"]) == [3, 0]
    assert df["K"].isna().all() and df["r"].isna().all()


def test_read_instances_errors_name_file_and_line(tmp_path):
    f = _samples(tmp_path / "m" / "samples_t_2026-01-01T00-00-00.jsonl",
                 [{"doc_id": 0, "n_samples": 4, "n_passed": 1}, {"doc_id": 1, "n_samples": 4, "n_passed": 5}])
    with pytest.raises(ValueError, match=rf"{f.name}:2: n_passed = 5 exceeds n_samples = 4"):
        read_instances(tmp_path)
    f.write_text('{"doc_id": 0, "n_samples": 2.5, "n_passed": 1}\n')
    with pytest.raises(ValueError, match=rf"{f.name}:1: n_samples = 2.5 is not a non-negative integer"):
        read_instances(f)
    f.write_text('{"doc_id": 0, "acc": 1.0}\n')
    with pytest.raises(ValueError, match=rf"{f.name}:1: no n_samples/n_passed"):
        read_instances(f)
    f.unlink()
    with pytest.raises(FileNotFoundError, match="--log_samples"):
        read_instances(tmp_path / "m")


# ---------------------------------------------------------------- manifests and sizes

def test_manifest_csv_and_yaml_forms(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("model,N,tokens,loss,seed,checkpoint,note\n"
                   "org/a,70M,3e11,3.1,1,step143000,first\norg/b,1.4e9,,2.5,2,step143000,second\n")
    m = read_manifest(csv)
    assert list(m["model"]) == ["org/a", "org/b"] and list(m["N"]) == [7e7, 1.4e9]
    assert m["tokens"].iloc[0] == 3e11 and math.isnan(m["tokens"].iloc[1]) and list(m["note"]) == ["first", "second"]
    y1 = tmp_path / "m1.yaml"
    y1.write_text("- {model: org/a, N: 7.0e7, D: 1000}\n- {model: org/b, N: 1.4B}\n")
    y2 = tmp_path / "m2.yml"
    y2.write_text("org/a: {N: 70M, D: 1000}\norg/b:\n  N: 1400000000\n")
    for path in (y1, y2):
        m = read_manifest(path)
        assert list(m["model"]) == ["org/a", "org/b"] and list(m["N"]) == [7e7, 1.4e9]
        assert m["D"].iloc[0] == 1000.0 and math.isnan(m["D"].iloc[1])


def test_manifest_errors(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("model,N\norg/a,1e6\norg/b,2e6\norg/a,3e6\n")
    with pytest.raises(ValueError, match=r"dup\.csv: model\(s\) listed more than once: org/a$"):
        read_manifest(dup)
    bad = tmp_path / "bad.csv"
    bad.write_text("model,N,loss\norg/a,1e6,3.0\norg/b,2e6,lots\n")
    with pytest.raises(ValueError, match=r"bad\.csv: row 3 \(model 'org/b'\), column 'loss': 'lots' is not a number"):
        read_manifest(bad)
    nomodel = tmp_path / "nomodel.yaml"
    nomodel.write_text("- {N: 1}\n")
    with pytest.raises(ValueError, match=r"nomodel\.yaml: no 'model' column"):
        read_manifest(nomodel)
    ybad = tmp_path / "ybad.yaml"
    ybad.write_text("org/a: {N: true}\n")
    with pytest.raises(ValueError, match=r"ybad\.yaml: entry 1 \(model 'org/a'\), column 'N'"):
        read_manifest(ybad)


def test_attach_sizes_manifest_then_n_params_then_error(tmp_path):
    _write(tmp_path / "a" / "results_2026-01-01T00-00-00.json", _v04(model_args="pretrained=org/a", n_params=5e6))
    _write(tmp_path / "b" / "results_2026-01-01T00-00-00.json", _v04(model_args="pretrained=org/b", n_params=None))
    df = read_results(tmp_path)
    with pytest.raises(ValueError) as exc:
        attach_sizes(df)
    msg = str(exc.value)
    assert "org/b" in msg and "org/a" not in msg and "manifest" in msg and str(tmp_path / "b") in msg
    man = tmp_path / "man.csv"
    man.write_text("model,N\norg/b,2e7\n")
    out = attach_sizes(df, man)
    assert out.groupby("model")["N"].first().to_dict() == {"org/a": 5e6, "org/b": 2e7}
    man.write_text("model,N\norg/a,9e6\norg/b,2e7\n")  # the manifest wins over the file's count
    assert attach_sizes(df, read_manifest(man)).groupby("model")["N"].first()["org/a"] == 9e6
    # The manifest's other columns come along for later analyses.
    man.write_text("model,N,loss,seed\norg/a,9e6,3.2,1\norg/b,2e7,2.9,2\n")
    out = attach_sizes(df, man).groupby("model")[["loss", "seed"]].first()
    assert out.loc["org/a", "loss"] == 3.2 and out.loc["org/b", "seed"] == 2


# ---------------------------------------------------------------- tidy_table

def _inst(**over):
    base = {"model": ["a", "a", "b"], "N": [1e6, 1e6, 1e7], "task": ["t"] * 3, "instance": [0, 1, 0],
            "n": [10, 10, 4], "c": [0, 3, 4]}
    base.update(over)
    return pd.DataFrame(base)


def test_tidy_table_accepts_and_types():
    out = tidy_table(_inst(n=[10.0, 10.0, 4.0]))
    assert out["n"].dtype == np.int64 and list(out["c"]) == [0, 3, 4]
    res = tidy_table(pd.DataFrame({"model": ["a"], "N": [1e6], "task": ["t"], "metric": ["acc"], "value": [0.5]}))
    assert res["value"].iloc[0] == 0.5


@pytest.mark.parametrize("table, kind, pattern", [
    (_inst(c=[0, 11, 4]), None, r"0 <= c <= n: row 1: .*c=11"),
    (_inst(c=[0, -1, 4]), None, r"0 <= c <= n: row 1"),
    (_inst(n=[10, 0, 4], c=[0, 0, 0]), None, r"n must be an integer >= 1: row 1"),
    (_inst(n=[10, 2.5, 4], c=[0, 1, 0]), None, r"n must be an integer >= 1: row 1"),
    (_inst(N=[1e6, 1e6, 0.0]), None, r"N must be > 0.*row 2: model='b'"),
    (_inst(N=[1e6, None, 1e7]), None, r"missing N: row 1"),
    (_inst(n=["10", "x", "4"]), None, r"n is not numeric: row 1"),
    (_inst().drop(columns="instance"), "instances", r"lacks column\(s\) instance"),
    (pd.DataFrame({"model": ["a"], "task": ["t"], "metric": ["acc"], "value": [0.5]}), None, r"lacks column\(s\) N"),
    (pd.DataFrame({"model": ["a"], "N": [1.0], "task": ["t"], "metric": ["acc"], "value": [np.inf]}), None,
     r"value must be finite: row 0"),
])
def test_tidy_table_errors_name_rows(table, kind, pattern):
    with pytest.raises(ValueError, match=pattern):
        tidy_table(table, kind=kind)


def test_a_text_score_in_a_results_file_is_named_not_dropped_silently(tmp_path):
    """lm-eval 0.4 results whose acc is the string "0.41": left out, with a
    warning naming the file, task and metric (every CLI prints it)."""
    import json as _json
    import warnings as _w

    from analysis.ingest import load

    d = tmp_path / "org__m"
    d.mkdir()
    f = d / "results_2026-01-01T00-00-00.json"
    f.write_text(_json.dumps({
        "results": {"arc_easy": {"alias": "arc_easy", "acc,none": "0.41", "acc_stderr,none": "N/A",
                                 "acc_norm,none": 0.40}},
        "config": {"model": "hf", "model_args": "pretrained=org/m", "model_num_parameters": 1000}}))
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        df = load([str(d)])
    msgs = [str(w.message) for w in caught]
    assert any(str(f) in m and "'acc,none'" in m and "'0.41'" in m for m in msgs), msgs
    assert not any("alias" in m or "stderr" in m for m in msgs)
    assert set(df["metric"]) == {"acc_norm"}
