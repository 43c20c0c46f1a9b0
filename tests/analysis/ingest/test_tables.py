"""analysis.ingest.tables: tidy tables (CSV, TSV, parquet, JSONL, JSON) and
lm-eval output into one table, the scale variable, and the CLIs that read them.

Every fixture is written here (small synthetic tables); the real Pythia table
under ../shared/data is used where present."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.ingest import TableWarning, is_table_file, load, read_table, select_metric, with_x

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
PYTHIA_TIDY = DATA / "pythia_evals" / "pythia_v1_evals_tidy.csv.gz"

SCORES = pd.DataFrame({
    "model": ["org/a-s0", "org/a-s1", "org/b-s0"],
    "N": [1e6, 1e6, 4e6],
    "tokens": [2e7, 2e7, 8e7],
    "task": ["toy", "toy", "toy"],
    "score": [0.25, 0.5, 0.75],
    "seed": [0, 1, 0],
})


def _write(df: pd.DataFrame, path: Path) -> Path:
    name = path.name
    if name.endswith((".csv", ".csv.gz")):
        df.to_csv(path, index=False)
    elif name.endswith((".tsv", ".tsv.gz")):
        df.to_csv(path, index=False, sep="\t")
    elif name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        text = "".join(json.dumps(r) + "\n" for r in df.to_dict("records"))
        if name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            path.write_text(text)
    elif name.endswith(".json"):
        path.write_text(json.dumps(df.to_dict("records")))
    return path


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.tsv", "t.tsv.gz", "t.parquet", "t.jsonl",
                                  "t.jsonl.gz", "t.json"])
def test_each_format_round_trips(tmp_path, name):
    path = _write(SCORES, tmp_path / name)
    assert is_table_file(path)
    df = read_table(path)
    assert list(df["model"]) == list(SCORES["model"])
    assert df["N"].tolist() == SCORES["N"].tolist() and df["tokens"].tolist() == SCORES["tokens"].tolist()
    assert df["score"].tolist() == pytest.approx(SCORES["score"].tolist())
    assert list(df["seed"]) == [0, 1, 0] and list(df["task"]) == ["toy"] * 3
    assert list(df["metric"]) == ["acc"] * 3 and list(df["filter"]) == ["none"] * 3
    assert set(df["file"]) == {str(path)}
    if name.endswith(("csv", "csv.gz", "tsv", "tsv.gz")):
        assert df["line"].tolist() == [2, 3, 4]
    elif "jsonl" in name:
        assert df["line"].tolist() == [1, 2, 3]
    # load() of the same file: same rows, as a scores table
    loaded = load(path)
    assert loaded.attrs["kind"] == "scores" and loaded["score"].tolist() == pytest.approx([0.25, 0.5, 0.75])
    assert (loaded["source"] == "table").all()


def test_counts_table_and_its_checks(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("model,N,task,instance,n,c\nm1,1e6,t,0,10,2\nm1,1e6,t,1,8,0\nm2,70M,t,0,5,5\n")
    df = read_table(path)
    assert df["n"].dtype == np.int64 and df["c"].tolist() == [2, 0, 5]
    assert df["N"].tolist() == [1e6, 1e6, 7e7]  # 70M read as a number
    assert df["instance"].tolist() == [0, 1, 0]
    path.write_text("model,N,task,instance,n,c\nm1,1e6,t,0,10,2\nm1,1e6,t,1,4,5\n")
    with pytest.raises(ValueError, match=r"c\.csv:3: c = 5 is not an integer with 0 <= c <= n = 4"):
        read_table(path)
    path.write_text("model,task,instance,n,c\nm1,t,0,0,0\n")
    with pytest.raises(ValueError, match=r"c\.csv:2: n = 0 is not an integer >= 1"):
        read_table(path)
    path.write_text("model,task,n,c\nm1,t,3,1\n")
    with pytest.raises(ValueError, match="without an 'instance' column"):
        read_table(path)


def test_aliases_and_case(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("Model,PARAMS,Tokens_Seen,FLOPs,Task,doc_id,samples,passes,Split,d\n"
                    "m1,1e6,2e7,1.2e14,t,0,10,2,Train,0\nm2,2e6,2e7,2.4e14,t,0,10,3,held-out,0\n")
    df = read_table(path)
    for col in ("model", "N", "tokens", "compute", "task", "instance", "n", "c", "split", "D"):
        assert col in df.columns, col
    assert df["split"].tolist() == ["train", "holdout"] and df["c"].tolist() == [2, 3]
    # N (parameters) and n (samples) are told apart by case
    path.write_text("model,N,task,instance,n,c\nm1,5e6,t,0,7,1\n")
    df = read_table(path)
    assert df["N"].iloc[0] == 5e6 and df["n"].iloc[0] == 7
    # score aliases; two columns meaning the same thing are an error
    path.write_text("model,n_params,task,value\nm1,1e6,t,0.5\n")
    assert read_table(path)["score"].iloc[0] == 0.5 and read_table(path)["N"].iloc[0] == 1e6
    path.write_text("model,task,acc,value\nm1,t,0.5,0.5\n")
    with pytest.raises(ValueError, match="both mean 'score'"):
        read_table(path)
    path.write_text("model,task,score,split\nm1,t,0.5,validation\n")
    with pytest.raises(ValueError, match=r"a\.csv:2: split 'validation' is not 'train', 'holdout' or 'predict'"):
        read_table(path)


# ---------------------------------------------------------------- errors name file and line

def test_bad_number_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    # data row 3 (0-based 2) is on line 4: the header is line 1
    path.write_text("model,N,task,instance,n,c\nm,1e6,t,0,10,1\nm,1e6,t,1,10,1\nm,1e6,t,2,abc,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv:4: column n: 'abc' is not a number"):
        read_table(path)
    # a blank line before it moves it down: the error follows the file, not the row count
    path.write_text("model,N,task,score\nm1,1e6,t,0.5\n\nm2,x7,t,0.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv:4: column N: 'x7' is not a number"):
        read_table(path)


def test_bad_json_lines_and_records(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"model": "a", "task": "t", "score": 0.5}\n{"model": "b", \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_table(path)
    path.write_text('{"model": "a", "task": "t", "score": 0.5}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: expected a JSON object"):
        read_table(path)
    path.write_text('{"model": "a", "task": "t", "score": 0.5}\n\n{"model": "b", "task": "t", "score": "hi"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: column score: 'hi' is not a number"):
        read_table(path)
    rec = tmp_path / "bad.json"
    rec.write_text(json.dumps([{"model": "a", "task": "t", "score": 0.5}, {"model": "b", "task": "t", "score": None}]))
    with pytest.raises(ValueError, match=r"bad\.json: record 2: score = nan is not a finite number"):
        read_table(rec)
    rec.write_text(json.dumps({"model": "a"}))
    with pytest.raises(ValueError, match=r"bad\.json: .*list of records"):
        load(rec)


def test_unknown_format_lists_the_formats(tmp_path):
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00\x01 not a table")
    with pytest.raises(ValueError, match=r"junk\.dat: not a table or lm-eval result file") as exc:
        load(junk)
    for fmt in (".csv", ".tsv", ".parquet", ".jsonl", ".json", "lm-eval"):
        assert fmt in str(exc.value)
    assert not is_table_file(junk)
    with pytest.raises(FileNotFoundError, match="nope"):
        load(tmp_path / "nope.csv")
    wide = tmp_path / "wide.csv"
    wide.write_text("name,params,arc_easy,piqa\nm1,1e6,0.3,0.6\n")
    with pytest.raises(ValueError, match="neither counts .* nor scores"):
        read_table(wide)


def test_scores_checked_and_percentages(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("model,task,score\na,t,50\nb,t,0\nc,t,100\n")
    with pytest.warns(TableWarning, match="percentages"):
        df = read_table(path)
    assert df["score"].tolist() == [0.5, 0.0, 1.0]
    path.write_text("model,task,score\na,t,0.5\nb,t,0\nc,t,3\n")
    with pytest.raises(ValueError, match=r"p\.csv:4: score = 3 .* not in \[0, 1\]"):
        read_table(path)
    # a metric that is not a proportion keeps its values
    path.write_text("model,task,metric,score\na,t,word_perplexity,31.5\n")
    assert read_table(path)["score"].iloc[0] == 31.5


# ---------------------------------------------------------------- models: derived, never merged by scale

def test_no_model_column_derives_ids_with_a_warning(tmp_path):
    path = _write(SCORES.drop(columns="model"), tmp_path / "nomodel.csv")
    with pytest.warns(TableWarning, match="no 'model' column"):
        df = read_table(path)
    assert df["model"].tolist() == ["N=1M tokens=20M seed=0", "N=1M tokens=20M seed=1", "N=4M tokens=80M seed=0"]
    # ids that would round to the same text keep full precision
    close = pd.DataFrame({"N": [100000001.0, 100000002.0], "task": ["t", "t"], "score": [0.1, 0.2]})
    with pytest.warns(TableWarning):
        df = read_table(_write(close, tmp_path / "close.csv"))
    assert df["model"].nunique() == 2
    # nothing to tell models apart by: an error saying so
    bare = tmp_path / "bare.csv"
    bare.write_text("task,score\nt,0.5\n")
    with pytest.raises(ValueError, match="no 'model' column, and none of N"):
        read_table(bare)


def test_two_models_with_the_same_compute_stay_two_models(tmp_path):
    t = pd.DataFrame({"model": ["wide", "deep"], "N": [2e6, 4e6], "tokens": [4e7, 2e7], "compute": [4.8e14, 4.8e14],
                      "task": ["t", "t"], "instance": [0, 0], "n": [10, 10], "c": [3, 5]})
    df = load(_write(t, tmp_path / "same.csv"))
    assert len(df) == 2 and df["c"].tolist() == [3, 5]  # not summed: different models
    x = with_x(df, "compute")
    assert x["x"].tolist() == [4.8e14, 4.8e14] and x.attrs["x_name"] == "compute"
    assert "x_note" not in x.attrs  # the table has compute
    # and without a model column the derived ids still tell them apart
    with pytest.warns(TableWarning):
        d2 = load(_write(t.drop(columns="model"), tmp_path / "same2.csv"))
    assert d2["model"].nunique() == 2 and d2["c"].tolist() == [3, 5]


def test_model_with_several_steps_becomes_one_model_per_step(tmp_path):
    t = pd.DataFrame({"model": ["p70m"] * 2 + ["p160m"] * 2, "N": [7e7, 7e7, 1.6e8, 1.6e8],
                      "step": [1000, 2000, 1000, 2000], "task": ["t"] * 4, "score": [0.1, 0.2, 0.3, 0.4]})
    with pytest.warns(TableWarning, match="several values of step"):
        df = read_table(_write(t, tmp_path / "steps.csv"))
    assert df["model"].tolist() == ["p70m@step1000", "p70m@step2000", "p160m@step1000", "p160m@step2000"]
    # one model with two N is a mistake, not a ladder
    bad = t.assign(step=1000)
    bad.loc[1, "N"] = 9e7
    bad.loc[1, "task"] = "u"
    with pytest.raises(ValueError, match=r"model 'p70m' has several values of N .*steps2\.csv:2"):
        read_table(_write(bad, tmp_path / "steps2.csv"))


# ---------------------------------------------------------------- with_x

def test_with_x_compute_from_n_and_tokens_and_errors(tmp_path):
    df = read_table(_write(SCORES, tmp_path / "s.csv"))
    x = with_x(df, "compute")
    assert x["x"].tolist() == pytest.approx((6 * SCORES["N"] * SCORES["tokens"]).tolist())
    assert x.attrs["x_name"] == "compute" and "6 * N * tokens" in x.attrs["x_note"]
    assert with_x(df, "N")["x"].tolist() == [1e6, 1e6, 4e6]
    assert with_x(df, "tokens").attrs["x_name"] == "tokens"
    assert "x" not in df.columns  # a copy
    part = df.copy()
    part.loc[2, "N"] = np.nan
    with pytest.raises(ValueError, match=r"no parameter count N for these models.*org/b-s0"):
        with_x(part, "N")
    with pytest.raises(ValueError, match=r"no compute for these models.*org/b-s0"):
        with_x(part, "compute")
    zero = df.assign(tokens=[0.0, 2e7, 8e7])
    with pytest.raises(ValueError, match=r"must be finite and > 0 \(the laws use log tokens\): org/a-s0"):
        with_x(zero, "tokens")
    with pytest.raises(ValueError, match="no column 'flops_per_token'.*N, compute, tokens"):
        with_x(df, "flops_per_token")
    with pytest.raises(ValueError, match="not numeric"):
        with_x(df, "task")


# ---------------------------------------------------------------- duplicates

def test_duplicate_counts_are_summed_with_a_warning(tmp_path):
    a = tmp_path / "run1.csv"
    b = tmp_path / "run2.csv"
    a.write_text("model,N,task,instance,n,c\nm,1e6,t,0,10,2\nm,1e6,t,1,10,0\n")
    b.write_text("model,N,task,instance,n,c\nm,1e6,t,0,6,1\n")
    with pytest.warns(TableWarning, match=r"2 rows repeat 1 .* across 2 files: merged by summing"):
        df = load([a, b])
    assert len(df) == 2
    row = df[df["instance"] == 0].iloc[0]
    assert (row["n"], row["c"]) == (16, 3)
    # within one file too
    a.write_text("model,N,task,instance,n,c\nm,1e6,t,0,10,2\nm,1e6,t,0,5,5\nm2,1e6,t,0,5,5\n")
    with pytest.warns(TableWarning, match="merged by summing"):
        df = read_table(a)
    assert df["n"].tolist() == [15, 5] and df["c"].tolist() == [7, 5]


def test_duplicate_scores_are_an_error_naming_the_rows(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("model,N,task,score\na,1e6,t,0.5\nb,1e6,t,0.6\na,1e6,t,0.7\n")
    with pytest.raises(ValueError, match=r"model='a'.*dup\.csv:2, .*dup\.csv:4"):
        read_table(path)
    # the same N for two models is not a duplicate
    path.write_text("model,N,task,score\na,1e6,t,0.5\nb,1e6,t,0.6\n")
    assert len(load(path)) == 2


# ---------------------------------------------------------------- lm-eval output, manifests, mixing

def _results(directory: Path, model: str, tasks: dict, n_params=None, n_samples=None):
    """A v0.4 results file: tasks = {task: {metric: (value, stderr)}}."""
    directory.mkdir(parents=True, exist_ok=True)
    results = {t: {"alias": t, **{f"{m},none": v for m, (v, _) in ms.items()},
                   **{f"{m}_stderr,none": se for m, (_, se) in ms.items()}} for t, ms in tasks.items()}
    data = {"results": results, "configs": {t: {} for t in tasks}, "n-shot": {t: 0 for t in tasks},
            "config": {"model": "hf", "model_args": f"pretrained={model}",
                       **({"model_num_parameters": n_params} if n_params else {})}}
    if n_samples:
        data["n-samples"] = {t: {"original": n, "effective": n} for t, n in n_samples.items()}
    (directory / "results_2026-01-01T00-00-00.000000.json").write_text(json.dumps(data))


def test_load_mixes_tables_and_lm_eval_dirs_with_a_manifest(tmp_path):
    p, n = 0.3, 200
    se = float(np.sqrt(p * (1 - p) / (n - 1)))
    _results(tmp_path / "runs" / "big", "org/big", {"toy": {"acc": (p, se), "acc_norm": (0.31, "N/A")}})
    _results(tmp_path / "runs" / "mid", "org/mid", {"toy": {"acc": (0.2, 0.01)}}, n_params=5e6,
             n_samples={"toy": 123})
    table = _write(SCORES.drop(columns="seed"), tmp_path / "small.csv")
    man = tmp_path / "m.csv"
    man.write_text("model,N,flops,seed\norg/big,1e8,1e18,3\norg/a-s0,1e6,,\n")
    df = load([tmp_path / "runs", table], man)
    assert set(df["source"]) == {"table", "lm-eval"} and df.attrs["kind"] == "scores"
    big = df[(df["model"] == "org/big") & (df["metric"] == "acc")].iloc[0]
    assert big["N"] == 1e8 and big["compute"] == 1e18 and big["seed"] == 3
    assert big["n_items"] == n  # from the stderr of a mean of 0/1 items
    assert pd.isna(df[(df["model"] == "org/big") & (df["metric"] == "acc_norm")]["n_items"]).all()
    mid = df[df["model"] == "org/mid"].iloc[0]
    assert mid["N"] == 5e6 and mid["n_items"] == 123  # n_params; n-samples of the results file
    # select_metric: acc preferred over acc_norm
    sel = select_metric(df)
    assert set(sel["metric"]) == {"acc"} and len(sel) == 5
    with pytest.raises(ValueError, match=r"task 'toy' has no metric 'f1'; its metrics: \['acc', 'acc_norm'\]"):
        select_metric(df, "f1")
    # a manifest that contradicts the table is an error naming both
    man.write_text("model,N\norg/a-s0,2e6\n")
    with pytest.raises(ValueError, match=r"model 'org/a-s0': N = 1e\+06 in .*small\.csv but 2e\+06 in"):
        load([table], man)


def test_select_metric_ambiguous_lists_choices():
    df = pd.DataFrame({"model": ["a", "a"], "task": ["t", "t"], "metric": ["f1", "em"], "filter": ["none", "none"],
                       "score": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"task 't' has several metrics \['em', 'f1'\]"):
        select_metric(df)
    assert select_metric(df, "em")["score"].tolist() == [0.2]


def test_load_passuntil_dir_gives_counts_with_sizes(tmp_path):
    d = tmp_path / "runs" / "m"
    _results(d, "org/m", {"passuntil_toy": {"pu": (0.1, "N/A")}}, n_params=3e6)
    (d / "samples_passuntil_toy_2026-01-01T00-00-00.000000.jsonl").write_text(
        "".join(json.dumps({"doc_id": i, "n_samples": 10, "n_passed": i}) + "\n" for i in range(3)))
    df = load(tmp_path / "runs")
    assert df.attrs["kind"] == "counts"
    assert df["model"].unique().tolist() == ["org/m"] and df["N"].unique().tolist() == [3e6]
    assert df["c"].tolist() == [0, 1, 2] and df["instance"].tolist() == [0, 1, 2]
    man = tmp_path / "m.csv"
    man.write_text("model,N,tokens\norg/m,2e6,1e9\n")
    df = load(tmp_path / "runs", man)
    assert df["N"].unique().tolist() == [2e6]  # the manifest's N wins over model_num_parameters
    assert with_x(df, "compute")["x"].unique().tolist() == [6 * 2e6 * 1e9]
    # scores from the same directory when asked for
    assert load(tmp_path / "runs", kind="scores")["metric"].tolist() == ["pu"]
    # a score table where counts are needed names the file
    with pytest.raises(ValueError, match=r"s\.csv: a table of scores"):
        load(_write(SCORES, tmp_path / "s.csv"), kind="counts")


@pytest.mark.slow
def test_real_pythia_tidy_table():
    if not PYTHIA_TIDY.exists():
        pytest.skip(f"real data not present: {PYTHIA_TIDY}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TableWarning)
        df = read_table(PYTHIA_TIDY)
    assert any("several values of step" in str(w.message) for w in caught)
    lam = df[(df.task == "lambada_openai") & (df.metric == "acc") & (df.step == 143000) & (df.num_fewshot == 0)]
    lam = lam.set_index("model")["score"]
    assert lam["pythia-70m@step143000"] == pytest.approx(0.185, abs=0.001)
    assert lam["pythia-12b@step143000"] == pytest.approx(0.705, abs=0.001)
    assert len(df) == len(pd.read_csv(PYTHIA_TIDY))  # nothing dropped or merged


# ---------------------------------------------------------------- the CLIs on tables

def test_seeds_cli_reads_a_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for size, n in (("s", 1e6), ("m", 1e7), ("l", 1e8)):
        for seed in range(6):
            hi = rng.uniform() < {"s": 0.1, "m": 0.5, "l": 0.9}[size]
            rows.append({"model": f"lm-{size}-{seed}", "params": n, "tokens": 20 * n, "seed": seed, "task": "toy",
                         "acc": float(np.clip(rng.normal(0.7 if hi else 0.25, 0.03), 0, 1))})
    csv = _write(pd.DataFrame(rows), tmp_path / "runs.csv")
    out = tmp_path / "out"
    rc = main(["seeds", str(csv), "--n_boot", "50", "--output_path", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "P(success)" in captured.out and "only 6 seeds" in captured.out
    report = json.loads((out / "seeds_toy_acc.json").read_text())
    assert [s["n_seeds"] for s in report["sizes"]] == [6, 6, 6]
    assert {m["seed_source"] for m in report["models"]} == {"table"}
    assert (out / "seeds_toy_acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the size variable can be compute (6 * N * tokens here)
    rc = main(["seeds", str(csv), "--x", "compute", "--n_boot", "0", "--output_path", str(tmp_path / "o2")])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "o2" / "seeds_toy_acc.json").read_text())
    assert report["x"] == "compute" and sorted({m["x"] for m in report["models"]}) == [1.2e14, 1.2e16, 1.2e18]
    # checkpoints: each (size, seed) keeps its last step, with a note
    steps = pd.concat([pd.DataFrame(rows).assign(step=1000, acc=0.2), pd.DataFrame(rows).assign(step=2000)])
    rc = main(["seeds", str(_write(steps, tmp_path / "steps.csv")), "--n_boot", "0", "--output_path", str(tmp_path / "o3")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "18 earlier checkpoint(s) left out" in err
    report = json.loads((tmp_path / "o3" / "seeds_toy_acc.json").read_text())
    assert len(report["models"]) == 18 and all(m["model"].endswith("@step2000") for m in report["models"])
    # no N and --x N: exit 2 naming the models
    assert main(["seeds", str(_write(pd.DataFrame(rows).drop(columns="params"), tmp_path / "noN.csv")),
                 "--output_path", str(out)]) == 2
    assert "no parameter count N" in capsys.readouterr().err


TASK = "emergence_csqa"
A, B, K, ALPHA, C = 0.5, 0.2, 0.12, 1.0, 2.6


def test_emergence_cli_reads_a_csv(tmp_path, capsys):
    rng = np.random.default_rng(4)
    rows = []
    for i, L in enumerate(np.linspace(2.0, 3.6, 9)):
        for D in (0, 10, 100, 1000):
            e = K * np.log(max(D, 1.5)) ** ALPHA + C if D > 0 else C
            p = min(A * max(e - L, 0.0) + B, 1.0)
            rows.append({"model": f"ck{i}" if D == 0 else f"ck{i}-ft-D{D}", "task": TASK, "D": D,
                         "seed": "" if D == 0 else 0, "loss": round(float(L), 6),
                         "compute": 1e15 * np.exp(3.6 - L) ** 4,
                         "n_items": 400, "score": rng.binomial(400, p) / 400})
    csv = _write(pd.DataFrame(rows), tmp_path / "sweep.csv")
    out = tmp_path / "out"
    rc = main(["emergence", str(csv), "--d0", "1", "--backtest", "--n_boot", "20", "--output_path", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "few-shot emergence E(D0=1)" in captured.out and "Emergence backtest" in captured.out
    report = json.loads((out / f"emergence_{TASK}.json").read_text())
    fit = report["fit"]
    assert fit["likelihood"] == "binomial" and fit["n_checkpoints"] == 9  # n from n_items
    assert fit["D_values"] == [10.0, 100.0, 1000.0]
    assert abs(fit["few_shot_emergence"]["E"] - C) < 0.3
    assert report["backtest"]["lead_flops_ratio"] > 1  # compute became flops
    assert sorted({r["checkpoint"] for r in report["rows"]}) == sorted({f"L={L:.6g}" for L in
                                                                         pd.DataFrame(rows)["loss"]})
    assert (out / f"emergence_{TASK}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a table without D: one clear error
    rc = main(["emergence", str(_write(pd.DataFrame(rows).drop(columns="D"), tmp_path / "noD.csv")),
               "--output_path", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "no column D" in err and "noD.csv" in err


@pytest.mark.parametrize("cmd", ["seeds", "emergence"])
@pytest.mark.parametrize("name,content", [("junk.dat", b"\x00\x01\x02 garbage"),
                                          ("junk.csv", bytes(range(256)) * 4),
                                          ("junk.jsonl", b"not json at all\n")])
def test_garbage_input_exits_2_with_one_line(tmp_path, capsys, cmd, name, content):
    junk = tmp_path / name
    junk.write_bytes(content)
    rc = main([cmd, str(junk), "--output_path", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    path = _write(SCORES, tmp_path / "t.parquet")

    def no_pyarrow(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_pyarrow)
    with pytest.raises(ValueError, match=r"t\.parquet: reading parquet needs pyarrow"):
        read_table(path)


def test_counts_and_scores_do_not_mix(tmp_path):
    counts = tmp_path / "c.csv"
    counts.write_text("model,N,task,instance,n,c\nm,1e6,t,0,10,2\n")
    scores = _write(SCORES, tmp_path / "s.csv")
    with pytest.raises(ValueError, match="mix counts .* and scores"):
        load([counts, scores])
    with pytest.raises(ValueError, match=r"s\.csv: a table of scores .* but counts are needed"):
        load([counts, scores], kind="counts")


def test_counts_table_pu_column(tmp_path):
    """An optional per-instance pu (the sampler's estimate) is read, checked
    against the counts, and used by every analysis through instance_pu."""
    from analysis.ingest import instance_pu, load

    p = tmp_path / "counts.csv"
    p.write_text("model,N,task,instance,n,c,pu\n"
                 "a,1e6,t,0,40,2,0.031\n"
                 "a,1e6,t,1,16,0,0\n"
                 "a,1e6,t,2,16,1,\n")
    df = load(p)
    assert list(instance_pu(df)) == pytest.approx([0.031, 0.0, 1 / 16])
    bad = tmp_path / "bad.csv"
    bad.write_text("model,N,task,instance,n,c,pu\na,1e6,t,0,40,2,0.031\na,1e6,t,1,16,0,0.2\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: pu = 0\.2 contradicts c = 0"):
        load(bad)
    bad.write_text("model,N,task,instance,n,c,pu\na,1e6,t,0,40,2,1.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: pu = 1\.5 is not a pass rate"):
        load(bad)
    # duplicates are summed: an estimate of one run's design no longer applies, c/n does
    dup = tmp_path / "dup.csv"
    dup.write_text("model,N,task,instance,n,c,pu\na,1e6,t,0,40,2,0.031\na,1e6,t,0,8,1,0.125\n")
    with pytest.warns(UserWarning, match="merged by summing"):
        d = load(dup)
    assert list(instance_pu(d)) == pytest.approx([3 / 48])
