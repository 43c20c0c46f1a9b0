"""bench/real_ladders.py on the real public data in ../shared/data.

Skipped as a whole where that folder is absent (a user's machine). Checks the
known facts from the data README, the tidy format of every ladder, and the
item counts and chance floors against what the data themselves imply.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / ".." / "shared" / "data"

if not (DATA / "README.md").is_file():
    pytest.skip("../shared/data is absent", allow_module_level=True)


def _load():
    spec = importlib.util.spec_from_file_location("real_ladders", ROOT / "bench" / "real_ladders.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["real_ladders"] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


rl = _load()


@pytest.fixture(scope="module")
def all_ladders():
    return {lad.name: lad for lad in rl.ladders(DATA)}


def _final(table, task):
    """score by N for one task."""
    return table[table["task"] == task].set_index("N")["score"].sort_index()


# ---------------------------------------------------------------- README facts


def test_readme_facts_standard_suite():
    # The README's numbers (.185 -> .705 lambada, .374 -> .702 arc_easy,
    # .601 -> .902 sciq) are the standard (non-deduped) suite's.
    t = rl.pythia_table(DATA, suite="standard", steps=[143000])
    for task, lo, hi in [("lambada_openai", 0.185, 0.705), ("arc_easy", 0.374, 0.702), ("sciq", 0.601, 0.902)]:
        s = _final(t, task)
        assert s.iloc[0] == pytest.approx(lo, abs=0.01), task
        assert s.iloc[-1] == pytest.approx(hi, abs=0.01), task
        assert t.loc[t["task"] == task, "N"].min() == pytest.approx(70_426_624)
        assert t.loc[t["task"] == task, "N"].max() == pytest.approx(11_846_072_320)


def test_pythia_deduped_final(all_ladders):
    lad = all_ladders["pythia_deduped_0shot"]
    t = lad.table
    assert lad.x == "N"
    assert t["model"].nunique() == 8
    assert set(t["task"]) == set(rl.PYTHIA_TASKS)
    assert (t["step"] == 143000).all()
    assert t["model"].str.endswith("-deduped").all()
    # the deduped suite's own numbers (verified in the data)
    for task, lo, hi in [("lambada_openai", 0.192, 0.710), ("arc_easy", 0.385, 0.708), ("sciq", 0.606, 0.929)]:
        s = _final(t, task)
        assert s.iloc[0] == pytest.approx(lo, abs=0.01), task
        assert s.iloc[-1] == pytest.approx(hi, abs=0.01), task
    # arc_easy and sciq rise with size (sciq dips .870 -> .865 from 1B to 1.4B)
    for task in ("arc_easy", "sciq", "lambada_openai"):
        s = _final(t, task)
        assert s.iloc[-1] - s.iloc[0] > 0.3, task
        assert (np.diff(s.values) > -0.01).all(), task
        assert pd.Series(s.values).corr(pd.Series(np.log(s.index.values)), method="spearman") > 0.9
    # compute from the final step's tokens
    assert np.allclose(t["tokens"], 299_892_736_000)
    assert np.allclose(t["compute"], 6 * t["N"] * t["tokens"])


def test_pythia_checkpoints(all_ladders):
    lad = all_ladders["pythia_deduped_0shot_ckpts"]
    t = lad.table
    assert lad.x == "compute"
    # the warmup's checkpoints (steps 1-1000, inside the 1430-step warmup) are left out
    assert (t["step"] >= rl.PYTHIA_MIN_STEP).all() and rl.PYTHIA_MIN_STEP == 3000
    assert t["run"].nunique() == 8
    assert t["model"].nunique() == 8 * 15
    assert (t["model"] == t["run"] + "@" + t["step"].astype(str)).all()
    assert np.allclose(t["compute"], 6 * t["N"] * t["tokens"])
    assert np.allclose(t["tokens"], t["step"] * 2_097_152)
    # the final checkpoints are the final ladder
    fin = all_ladders["pythia_deduped_0shot"].table
    last = t[t["step"] == 143000]
    m = last.merge(fin, left_on=["run", "task"], right_on=["model", "task"], suffixes=("", "_f"))
    assert len(m) == len(fin)
    assert np.allclose(m["score"], m["score_f"])


def test_pythia_fewshot(all_ladders):
    lad = all_ladders["pythia_deduped_5shot"]
    t = lad.table
    assert t["model"].nunique() == 8
    assert set(t["task"]) == set(rl.PYTHIA_TASKS)
    assert (t["step"] == 143000).all()
    s = _final(t, "arc_easy")
    assert s.iloc[-1] > s.iloc[0] + 0.25


def test_pythia_n_items_from_stderr(all_ladders):
    t = all_ladders["pythia_deduped_0shot_ckpts"].table
    assert t["n_items"].notna().all()
    sizes = t.groupby("task")["n_items"].unique()
    for task, n in rl.KNOWN_SIZES.items():
        if task in sizes:
            assert list(sizes[task]) == [n], task
    # lambada at the warmup's steps: accuracy 0 and stderr 0, n from the split size
    raw = rl.pythia_table(DATA, checkpoint_ids=True)
    zero = raw[(raw["task"] == "lambada_openai") & (raw["score"] == 0)]
    assert len(zero) > 0 and (zero["n_items"] == 5153).all()


def test_n_from_stderr_formula():
    p, n = 0.3, 500
    se = np.sqrt(p * (1 - p) / (n - 1))
    assert rl.n_from_stderr([p], [se])[0] == n
    assert np.isnan(rl.n_from_stderr([0.0], [0.0])[0])


# ---------------------------------------------------------------- Gadre et al.


def test_gadre(all_ladders):
    comp = [l for n, l in all_ladders.items() if n.startswith("gadre_") and n.endswith("_compute")]
    assert len(comp) == 3
    assert sum(l.table["model"].nunique() for l in comp) == 104
    for lad in comp:
        t = lad.table
        assert lad.x == "compute"
        assert t["task"].nunique() == 46
        assert t["dataset"].nunique() == 1
        assert np.allclose(t["tokens"], 20 * t["N"] * t["token_multiplier"])
        assert np.allclose(t["compute"], 6 * t["N"] * t["tokens"])
        # every task has a chance floor and a size
        assert t["chance"].notna().all() and t["n_items"].notna().all()
        # the sizes agree with the scores: score * n is a whole number
        # (except the means over sub-categories)
        item = t[~t["task"].isin(rl.GADRE_MACRO_AVERAGED)]
        k = item["score"] * item["n_items"]
        assert np.abs(k - np.round(k)).max() < 0.01
    nlad = [l for n, l in all_ladders.items() if n.startswith("gadre_") and n.endswith("_N")]
    assert len(nlad) == 3
    for lad in nlad:
        assert lad.x == "N"
        assert lad.table["model"].nunique() == 6
        assert (lad.table["token_multiplier"] == 1.0).all()
    t = comp[0].table
    assert t.loc[t["task"] == "arc_challenge", "n_items"].iloc[0] == 1172
    assert rl.GADRE_CHANCE["lambada_openai"] == 0 and rl.GADRE_CHANCE["piqa"] == 0.5
    assert rl.GADRE_CHANCE["arc_easy"] == 0.25 and rl.GADRE_CHANCE["bigbench_logical_deduction"] == 0.2


def test_gadre_all_multipliers():
    lads = rl.gadre_ladders(DATA, n_multipliers=None)
    names = {l.name for l in lads}
    assert "gadre_rpj_32x_N" in names and "gadre_c4_original_0.25x_N" in names
    for lad in lads:
        rl.validate(lad)


# ---------------------------------------------------------------- Mamba-2


def test_mamba2(all_ladders):
    lad = all_ladders["mamba2_0shot"]
    t = lad.table
    assert lad.x == "N"
    assert t["model"].nunique() == 4
    assert sorted(t.drop_duplicates("model")["N"]) == [128989632, 780161280, 1343757312, 2702599680]
    for task in ("arc_easy", "arc_challenge", "hellaswag", "lambada_openai", "piqa", "sciq", "winogrande", "mmlu"):
        assert task in set(t["task"])
    assert "cola" not in set(t["task"])  # mcc only
    assert "mmlu_stem" not in set(t["task"])  # intermediate group
    assert (t["task"].str.startswith("mmlu_")).sum() == 4 * 57
    assert t["chance"].notna().all() and t["n_items"].notna().all()
    assert (t.loc[t["task"] == "mmlu", "n_items"] == 14042).all()
    # MMLU stays at chance for every size; arc_easy rises
    assert (t.loc[t["task"] == "mmlu", "score"].sub(0.25).abs() < 0.03).all()
    s = _final(t, "arc_easy")
    assert (np.diff(s.values) > 0).all()
    # n-samples agree with the stderr
    r = t[(t["task"] == "arc_easy")]
    assert (r["n_items"] == 2376).all()


# ---------------------------------------------------------------- every ladder


def test_every_ladder_well_formed(all_ladders):
    assert len(all_ladders) >= 9
    for name, lad in all_ladders.items():
        t = lad.table
        assert lad.x in ("N", "compute")
        for c in rl.SCORE_COLUMNS:
            assert c in t.columns, (name, c)
        assert not t.duplicated(["model", "task"]).any(), name
        n = t["n_items"].dropna()
        assert (n > 0).all(), name
        ch = t["chance"].dropna()
        assert ((ch >= 0) & (ch < 1)).all(), name
        assert t["score"].between(0, 1).all(), name
        assert (t[lad.x] > 0).all() and np.isfinite(t[lad.x]).all(), name
        assert (t["N"] > 0).all(), name
        assert t["model"].nunique() >= 4, name
        assert lad.description
        rl.validate(lad)


def test_validate_rejects_duplicates(all_ladders):
    lad = all_ladders["pythia_deduped_0shot"]
    bad = rl.Ladder(lad.name, pd.concat([lad.table, lad.table.iloc[:1]]), lad.x, lad.description)
    with pytest.raises(ValueError, match="duplicated"):
        rl.validate(bad)


# ---------------------------------------------------------------- the lab table


def _lab_csv(path):
    rows = [
        dict(model=m, N=N, seed=s, task="toy", instance=i, n=16, c=min(16, i + int(np.log10(N))))
        for m, N in [("a", 1e6), ("b", 1e7), ("c", 1e8)]
        for s in (0, 1)
        for i in range(3)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_lab_table(tmp_path):
    path = _lab_csv(tmp_path / "lab.csv")
    lads = rl.ladders(DATA, lab_table=path)
    lab = lads[-1]
    assert lab.name == "lab" and lab.kind == "counts" and lab.x == "N"
    for c in rl.COUNT_COLUMNS + ["run"]:
        assert c in lab.table.columns
    assert (lab.table["run"] == lab.table["model"]).all()
    assert len(lab.table) == 18

    bad = pd.read_csv(path)
    bad.loc[0, "c"] = 99
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="c <= n"):
        rl.lab_ladder(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="missing columns"):
        rl.lab_ladder(pd.read_csv(path).drop(columns=["instance"]))


# ---------------------------------------------------------------- CLI


def test_cli_writes_csvs(tmp_path, capsys):
    out = tmp_path / "out"
    assert rl.main(["--out", str(out), "--data-dir", str(DATA), "--lab-table", str(_lab_csv(tmp_path / "lab.csv"))]) == 0
    files = sorted(p.name for p in out.glob("*.csv"))
    assert "pythia_deduped_0shot.csv" in files and "mamba2_0shot.csv" in files and "lab.csv" in files
    t = pd.read_csv(out / "pythia_deduped_0shot.csv")
    assert len(t) == 64 and {"model", "N", "task", "score", "n_items", "chance"} <= set(t.columns)
    printed = capsys.readouterr().out
    assert "pythia_deduped_0shot_ckpts" in printed and "sizes" in printed
