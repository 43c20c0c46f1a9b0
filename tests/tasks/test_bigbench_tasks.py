"""The BIG-bench PassUntil tasks (Emoji Movie, Date Understanding, Unnatural ICL).

Everything runs on a tiny BIG-bench tree written to tmp (task.json files in
BIG-bench's own format); the real files in ../shared/data/bigbench are used
only where present. The hub path is tested with fake datasets laid out like
the hub's (formatted zero-shot prompts, concatenated Unnatural ICL subtasks).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lm_eval_ext.tasks import bigbench as bb
from lm_eval_ext import task_dir
from tests.scripted_lm import scripted_lm
from tests.lm_eval_cli import offline_env

REAL = Path(__file__).parents[2] / ".." / "shared" / "data" / "bigbench"
ICL = bb.ICL
TASK_NAMES = {"emoji_movie": "passuntil_emoji_movie", "date_understanding": "passuntil_date_understanding",
              **{f"{ICL}/{s}": f"passuntil_unnatural_icl_{s}" for s in bb.ICL_SUBTASKS}}
GROUPS = ["passuntil_bigbench", "passuntil_unnatural_icl"]


# ---------------------------------------------------------------- a tiny BIG-bench tree

EMOJI = [  # (input, target, target_scores): like emoji_movie/task.json, one with a list of targets
    ("What movie does this emoji describe? 👧🐟🐠🐡", "finding nemo",
     {"finding nemo": 1, "the shining": 0, "se7en": 0, "zootopia": 0, "coco": 0}),
    ("What movie does this emoji describe? 🐀👨‍🍳", "ratatouille",
     {"ratatouille": 1, "e.t. the extra-terrestrial": 0, "zootopia": 0, "juno": 0, "up": 0}),
    ("What movie does this emoji describe? 🦁👑", ["the lion king", "lion king"],
     {"the lion king": 1, "frozen": 0, "cars": 0, "coco": 0, "up": 0}),
    ("What movie does this emoji describe? 🧊👸", "frozen",
     {"frozen": 1, "the lion king": 0, "moana": 0, "cars": 0, "se7en": 0}),
    ("What movie does this emoji describe? 🚗⚡", "cars",
     {"cars": 1, "frozen": 0, "up": 0, "juno": 0, "coco": 0}),
]
DATES = [  # like date_understanding/task.json: target_scores only; one tie between two options
    ("Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?",
     {"05/01/2021": 1, "02/23/2021": 0, "03/11/2021": 0, "05/09/2021": 0, "06/12/2021": 0, "04/29/2021": 0}),
    ("Yesterday was April 30, 2021. What is the date tomorrow in MM/DD/YYYY?",
     {"05/02/2021": 1, "04/29/2021": 0, "04/11/2021": 0, "05/01/2021": 0, "03/14/2021": 0, "05/02/1960": 0}),
    ("Today is Christmas Eve of 1937. What is the date 10 days ago in MM/DD/YYYY?",
     {"12/14/1937": 1, "12/14/2007": 0, "12/14/1936": 0, "01/14/1938": 0, "09/14/1937": 0, "12/15/1937": 0}),
    ("Jane was born on the last day of February in 2001. What is her first birthday in MM/DD/YYYY?",
     {"02/28/2002": 1, "03/01/2002": 1, "02/28/2001": 0, "03/28/2002": 0, "01/28/2002": 0, "02/27/2002": 0}),
    ("The day before yesterday was 11/23/1933. What is the date today in MM/DD/YYYY?",
     {"11/25/1933": 1, "11/24/1933": 0, "11/25/1934": 0, "12/25/1933": 0, "11/26/1933": 0, "10/25/1933": 0}),
]
WORDS = ["about", "other", "first", "level", "basic", "saver", "plane", "cruel"]  # "level": a palindrome


def _icl_examples(sub: str, rng: random.Random) -> list[dict]:
    out = []
    if sub in ("dates", "dates_unnatural_form"):
        for _ in range(6):
            y, m, d = rng.randint(1970, 2000), rng.randint(1, 12), rng.randint(1, 28)
            a, b = f"{y}-{m:02d}-{d:02d}", f"!{m:02d}!{d:02d}!{y}!"
            out.append({"input": a, "target": b} if sub == "dates" else {"input": b, "target": a})
    elif sub.startswith("dates_unnatural_content"):
        for _ in range(6):
            x, y, z = (f"{rng.randint(10000, 99999)}" for _ in range(3))
            a, b = f"{x}-{y}-{z}", f"!{y}!{z}!{x}!"
            out.append({"input": a, "target": b} if sub == "dates_unnatural_content" else {"input": b, "target": a})
    elif sub == "identity":
        for _ in range(6):
            s = ", ".join(rng.sample("abcdefgh", 5))
            out.append({"input": s, "target": s})
    elif sub.startswith("reverse"):
        for w in WORDS:
            nat, rev = ", ".join(w), ", ".join(reversed(w))
            out.append({"input": nat, "target": rev} if sub == "reverse_natural_content"
                       else {"input": rev, "target": nat})
    else:  # unnatural_addition_2_digit
        for _ in range(6):
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            out.append({"input": f"{a} - {b} = ", "target": str(a + b)})
    return out


ICL_PREFIXES = {"example_input_prefix": "Input: ", "example_output_prefix": "\nOutput: ",
                "few_shot_example_separator": "\n", "stop_string": "\n"}


def write_bigbench_tree(root: Path) -> Path:
    """BIG-bench's benchmark_tasks layout with a few examples per task."""
    def dump(rel, data):
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "task.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    dump("emoji_movie", {"name": "emoji_movie", "append_choices_to_input": True,
                         "examples": [{"input": i, "target": t, "target_scores": s} for i, t, s in EMOJI]})
    dump("date_understanding", {"name": "date_understanding", "append_choices_to_input": False,
                                "examples": [{"input": i, "target_scores": s} for i, s in DATES]})
    dump(ICL, {"name": ICL, "metrics": ["exact_str_match"]})  # the parent: no examples
    rng = random.Random(7)
    for sub in bb.ICL_SUBTASKS:
        prefixes = ({"example_input_prefix": "", "example_output_prefix": ""}
                    if sub == "unnatural_addition_2_digit" else ICL_PREFIXES)
        dump(f"{ICL}/{sub}", {"name": sub, **prefixes, "examples": _icl_examples(sub, rng)})
    return root


@pytest.fixture(scope="module")
def bb_dir(tmp_path_factory):
    return write_bigbench_tree(tmp_path_factory.mktemp("bigbench") / "benchmark_tasks")


# ---------------------------------------------------------------- the hub's layout, faked

def hub_rows(task_json: dict) -> list[dict]:
    """Rows as the hub's BIG-bench conversion writes them: BIG-bench's zero-shot
    formatting (prefixes, options appended when the task asks for it)."""
    pre = task_json.get("example_input_prefix", "\nQ: ")
    post = task_json.get("example_output_prefix", "\nA: ")
    rows = []
    for i, ex in enumerate(task_json["examples"]):
        scores = ex.get("target_scores") or {}
        text = pre + ex["input"]
        if scores and task_json.get("append_choices_to_input", True):
            text += "".join(f"\n  choice: {c}" for c in sorted(scores))
        text += post
        if "target" in ex:
            targets = ex["target"] if isinstance(ex["target"], list) else [ex["target"]]
        else:
            targets = [k for k, v in scores.items() if v == max(scores.values())]
        rows.append({"idx": i, "inputs": text, "targets": targets, "multiple_choice_targets": list(scores),
                     "multiple_choice_scores": list(scores.values())})
    return rows


def fake_hub(root: Path, order=bb.ICL_SUBTASKS):
    """load(repo, config) over a BIG-bench tree, with the ICL subtasks concatenated in ``order``."""
    import datasets

    def load(repo, config):
        assert repo == bb.HUB_REPO and config.endswith("_zero_shot")
        name = config.removesuffix("_zero_shot")
        if name == ICL:
            rows = [r for s in order for r in hub_rows(json.loads((root / ICL / s / "task.json").read_text()))]
        else:
            rows = hub_rows(json.loads((root / name / "task.json").read_text()))
        return datasets.Dataset.from_list(rows)

    return load


# ---------------------------------------------------------------- data and prompts

def test_answers_from_targets_and_scores(tmp_path):
    assert bb.golds(["a"], {"a": 1, "b": 0}, "x") == ("a",)
    assert bb.golds([], {"a": 1, "b": 1, "c": 0}, "x") == ("a", "b")  # a tie: both are right
    assert bb.golds(["a", "alias"], {"a": 1, "b": 0}, "x") == ("a", "alias")
    with pytest.raises(ValueError, match="scored below"):
        bb.golds(["b"], {"a": 1, "b": 0}, "ex 3")  # a target that is a wrong option
    with pytest.raises(ValueError, match="empty"):
        bb.golds(["  "], None, "x")  # an empty answer would pass an empty generation
    with pytest.raises(ValueError, match="several lines"):
        bb.golds(["a\nb"], None, "x")  # would be checked as "a"
    with pytest.raises(ValueError, match="no answer"):
        bb.golds([], {"a": 0, "b": 0}, "x")
    bad = tmp_path / "task.json"
    bad.write_text('{"examples": [{"input": "q"}]}')
    with pytest.raises(ValueError, match=r"task\.json: example 0: neither"):
        bb.read_task_json(bad)
    bad.write_text("{nope")
    with pytest.raises(ValueError, match=r"task\.json:1: not valid JSON"):
        bb.read_task_json(bad)
    with pytest.raises(FileNotFoundError, match="task.json"):
        bb.read_local(tmp_path, "emoji_movie")
    with pytest.raises(ValueError, match="unknown BIG-bench task"):
        bb.load_examples("emoji", str(tmp_path))


def test_local_examples_and_prompts(bb_dir):
    ex, origin = bb.load_examples("emoji_movie", str(bb_dir))
    assert origin.startswith("local:") and len(ex) == 5
    assert ex[2].targets == ("the lion king", "lion king") and ex[0].targets == ("finding nemo",)
    dates, _ = bb.load_examples("date_understanding", str(bb_dir))
    assert dates[3].targets == ("02/28/2002", "03/01/2002")

    docs = bb.build_docs("emoji_movie", ex, shots=3)
    assert sorted(d["bigbench_index"] for d in docs) == list(range(5))
    for d in docs:
        me = ex[d["bigbench_index"]]
        assert d["prompt"].endswith(f"Q: {me.input}\nA:")  # the model writes " answer"
        assert "choice" not in d["prompt"]  # options are never shown
        assert len(d["demonstrations"]) == 3 and d["bigbench_index"] not in d["demonstrations"]
        for g in me.targets:  # no demonstration gives the answer away
            assert f"A: {g}\n" not in d["prompt"]
        assert d["target"] == list(me.targets) and d["answer"] == me.targets[0]
        assert d["prompt"].count("\n\nQ: ") == 3
    # the same prompt per example whatever else is there, and another order for another seed
    again = {d["bigbench_index"]: d["prompt"] for d in bb.build_docs("emoji_movie", ex, shots=3)}
    assert again == {d["bigbench_index"]: d["prompt"] for d in docs}
    assert [d["bigbench_index"] for d in bb.build_docs("emoji_movie", ex, seed=1)] != \
        [d["bigbench_index"] for d in docs] or len(docs) < 3

    add, _ = bb.load_examples(f"{ICL}/unnatural_addition_2_digit", str(bb_dir))
    d = bb.build_docs(f"{ICL}/unnatural_addition_2_digit", add, shots=2)[0]
    lines = d["prompt"].split("\n")
    assert len(lines) == 3 and lines[-1] == add[d["bigbench_index"]].input.strip()
    assert all(" = " in ln and ln.split(" = ")[1].isdigit() for ln in lines[:2])  # "10 - 15 = 25"
    ident, _ = bb.load_examples(f"{ICL}/identity", str(bb_dir))
    d = bb.build_docs(f"{ICL}/identity", ident, shots=1)[0]
    assert d["prompt"].startswith("Input: ") and d["prompt"].endswith("\nOutput:") and d["prompt"].count("\n") == 3
    assert bb.build_docs(f"{ICL}/identity", ident, shots=0)[0]["prompt"].count("\n") == 1
    with pytest.raises(ValueError, match="lower bigbench_shots"):
        bb.build_docs("emoji_movie", ex, shots=5)  # only 4 other examples
    with pytest.raises(ValueError, match="bigbench_shots"):
        bb.build_docs("emoji_movie", ex, shots=-1)


def test_hub_rows_give_the_same_documents_as_task_json(bb_dir):
    load = fake_hub(bb_dir)
    for task in TASK_NAMES:
        local, _ = bb.load_examples(task, str(bb_dir))
        hub = bb.read_hub(task, load=load)
        assert hub == local, task
        assert bb.build_docs(task, hub) == bb.build_docs(task, local)


def test_hub_layout_departures_are_errors(bb_dir):
    # Subtasks out of BIG-bench's order: the reverse pair could be swapped, so refuse.
    swapped = list(bb.ICL_SUBTASKS)
    i, j = swapped.index("reverse_natural_content"), swapped.index("dates")
    swapped[i], swapped[j] = swapped[j], swapped[i]
    with pytest.raises(ValueError, match="BIG-bench's order"):
        bb.read_hub(f"{ICL}/identity", load=fake_hub(bb_dir, order=swapped))
    # Options in the prompt that are not the row's options would leak.
    row = {"inputs": "Q: what?\n  choice: x\n  choice: y\nA: ", "targets": ["x"],
           "multiple_choice_targets": ["x", "z"], "multiple_choice_scores": [1, 0]}
    with pytest.raises(ValueError, match="leak"):
        bb.hub_row_example(row, 0, bb.QA, "row 0")
    row = {"inputs": "Q: what?\n  choice: x\n  choice: z\nA: ", "targets": ["x"],
           "multiple_choice_targets": ["x", "z"], "multiple_choice_scores": [1, 0]}
    assert bb.hub_row_example(row, 0, bb.QA, "row 0") == bb.Example("what?", ("x",), ("x", "z"), 0)
    with pytest.raises(ValueError, match="missing column"):
        bb.hub_row_example({"input": "q", "target": "a"}, 0, bb.QA, "row 0")
    with pytest.raises(ValueError, match="matches no Unnatural ICL subtask"):
        bb.split_icl_rows([{"inputs": "Input: hello\nOutput: ", "targets": ["world"]}], "fake")


def test_unreachable_hub_says_what_to_do():
    # tests run with HF_DATASETS_OFFLINE=1: the hub is unreachable by construction
    with pytest.raises(RuntimeError, match="bigbench_source"):
        bb.read_hub("emoji_movie")


def test_custom_dataset_source_choice(bb_dir, monkeypatch):
    bb._load_cached.cache_clear()
    monkeypatch.setattr(bb, "_hub_load", fake_hub(bb_dir))
    hub = bb.custom_dataset(bigbench_task="emoji_movie", version=1.0)["test"]
    assert len(hub) == 5 and "prompt" in hub.column_names
    monkeypatch.setattr(bb, "_hub_load", lambda *a: pytest.fail("the hub was used"))
    monkeypatch.setenv(bb.ENV_VAR, str(bb_dir))
    env = bb.custom_dataset(bigbench_task="emoji_movie")["test"]
    assert env.to_list() == hub.to_list()
    monkeypatch.delenv(bb.ENV_VAR)
    meta = bb.custom_dataset(bigbench_task=f"{ICL}/reverse_natural_content", bigbench_source=str(bb_dir),
                             bigbench_shots=0)["test"]
    assert len(meta) == len(WORDS) and all(p.count("Input:") == 1 for p in meta["prompt"])
    with pytest.raises(ValueError, match="bigbench_task"):
        bb.custom_dataset(bigbench_source=str(bb_dir))
    bb._load_cached.cache_clear()


# ---------------------------------------------------------------- a scripted model through lm-eval

def _passing(golds):
    """Samples the checker must pass: an answer, with surrounding whitespace, or
    followed by a next line (a real backend stops at the newline anyway)."""
    g = golds[-1]
    return [golds[0], f" {g}", f"{g}  ", f" {golds[0]}\nQ: next"]


def _near_misses(golds, choices, other):
    g = golds[0]
    out = [g + ".", g + " extra", f"{g} {g}", "A", "(A)", "", g[:-1], other]
    out += [g.upper(), g.title()] if g.upper() != g else []
    out += [g.replace(" ", "  "), g.replace(", ", ",")] if " " in g else []
    out += [c for c in choices if c not in golds][:2]  # a wrong option's text
    misses = [m for m in out if m.strip() not in golds]
    assert len(misses) >= 8, (golds, misses)  # the test itself must not hand out right answers
    return misses


def _scripted_lm(docs_by_prompt, want):
    """For the document behind each prompt: `want[(task, index)]` passing samples
    first, then near-misses (case, extra text, whitespace, option letters, ...)."""

    def answer(prompt, i):
        task, doc, other = docs_by_prompt[prompt]
        k = want[(task, doc["bigbench_index"])]
        good, bad = _passing(doc["target"]), _near_misses(doc["target"], doc["choices"], other)
        return good[i % len(good)] if i < k else bad[(i - k) % len(bad)]

    return scripted_lm(answer)


def _task_manager(source):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_dir()), include_defaults=False, metadata={"bigbench_source": source})


def _prompt_map(source, names):
    """prompt -> (lm-eval task, document, another document's answer), from the
    documents the tasks' custom_dataset builds (doc_to_text is "{{prompt}}")."""
    out = {}
    for task, name in TASK_NAMES.items():
        if name not in names:
            continue
        examples, _ = bb.load_examples(task, source)
        docs = bb.build_docs(task, examples)
        for j, d in enumerate(docs):
            out[d["prompt"]] = (name, d, docs[(j + 1) % len(docs)]["answer"])
    return out


@pytest.fixture
def no_env_report(monkeypatch):
    """simple_evaluate describes the environment (pip, git) in every result: seconds, not tested here."""
    import lm_eval.evaluator as ev
    import lm_eval.loggers.utils as lu

    monkeypatch.setattr(ev, "add_env_info", lambda results: None)
    monkeypatch.setattr(lu, "add_env_info", lambda results: None)
    monkeypatch.setattr(ev, "get_git_commit_hash", lambda: None)


@pytest.mark.slow
def test_checker_passes_exactly_the_scripted_answers(bb_dir, no_env_report):
    """Every task, every document: k right answers out of 10 give n_passed = k;
    no near-miss passes."""
    import lm_eval

    bb._load_cached.cache_clear()
    tm = _task_manager(str(bb_dir))
    prompts = _prompt_map(str(bb_dir), list(TASK_NAMES.values()))
    want = {(t, d["bigbench_index"]): (d["bigbench_index"] * 3) % 11 for t, d, _ in prompts.values()}
    assert {k for k in want.values()} >= {0, 10} and len({t for t, _ in want}) == 10
    lm = _scripted_lm(prompts, want)
    res = lm_eval.simple_evaluate(model=lm, tasks=["passuntil_bigbench"], task_manager=tm, log_samples=True,
                                  bootstrap_iters=0)
    checked = 0
    for task, recs in res["samples"].items():
        for rec in recs:
            k = want[(task, rec["doc"]["bigbench_index"])]
            assert rec["n_samples"] == 10
            assert rec["n_passed"] == k, (task, rec["doc"]["target"], rec["resps"][0], rec["filtered_resps"][0])
            assert rec["filtered_resps"][0] == ["passed"] * k + ["failed"] * (10 - k)
            checked += 1
    assert checked == len(want) == sum(len(json.loads((bb_dir / rel / "task.json").read_text())["examples"])
                                       for rel, _ in bb.TASKS.values())
    for task in TASK_NAMES.values():
        ks = [k for (t, _), k in want.items() if t == task]
        assert res["results"][task]["n_passed,passuntil"] == sum(ks)
        assert res["results"][task]["pu,passuntil"] == pytest.approx(sum(ks) / 10 / len(ks))
    # the group's pu is the unweighted mean of its tasks' pu
    tasks_pu = [res["results"][t]["pu,passuntil"] for t in TASK_NAMES.values()]
    assert res["results"]["passuntil_bigbench"]["pu,passuntil"] == pytest.approx(sum(tasks_pu) / len(tasks_pu))


@pytest.mark.slow
def test_adaptive_sampler_runs_a_bigbench_task(bb_dir, tmp_path, no_env_report):
    """run_adaptive on passuntil_emoji_movie: an item answered right every time
    stops after r passes; one never answered right runs to the cap, censored."""
    from analysis.ingest import read_instances
    from lm_eval_ext.sampling.adaptive import StopRule
    from lm_eval_ext.sampling.runner import run_adaptive, state_path

    bb._load_cached.cache_clear()
    prompts = _prompt_map(str(bb_dir), ["passuntil_emoji_movie"])
    # doc_id = position in the task's documents, as lm-eval numbers them
    docs = {d["bigbench_index"]: (pos, d) for pos, (_, d, _) in enumerate(prompts.values())}
    want = {("passuntil_emoji_movie", i): (10**6 if i % 2 == 0 else 0) for i in docs}
    out = tmp_path / "pu"
    lm = _scripted_lm(prompts, want)
    res = run_adaptive("passuntil_emoji_movie", lm, output_path=out,
                       rule=StopRule(r=2, cap=16, first=4), include_path=task_dir(), limit=5,
                       metadata={"bigbench_source": str(bb_dir)}, ks=(1,), progress=False)
    state = json.loads(state_path(out, "passuntil_emoji_movie", lm).read_text())
    assert state["finished"]
    for pos, d in docs.values():
        inst = state["instances"][str(pos)]
        if d["bigbench_index"] % 2 == 0:  # the first round's draw, all passes
            assert inst["stop"] == "r_passes" and set(inst["outcomes"]) == {"1"} and len(inst["outcomes"]) >= 2
        else:
            assert inst["stop"] == "cap" and inst["outcomes"] == "0" * 16
    counts = read_instances(out).set_index("instance")
    assert len(counts) == 5 and set(counts["task"]) == {"passuntil_emoji_movie"}
    for pos, d in docs.values():
        o = state["instances"][str(pos)]["outcomes"]
        assert (counts.loc[pos, "n"], counts.loc[pos, "c"]) == (len(o), o.count("1"))
        k = counts.loc[pos, "K"]  # the sample of the r-th pass; none for a censored instance
        assert k == 2 if d["bigbench_index"] % 2 == 0 else pd.isna(k)
    assert res["results"]["passuntil_emoji_movie"]["n_passed,passuntil"] == counts["c"].sum()


# ---------------------------------------------------------------- the real lm_eval CLI

@pytest.mark.slow
def test_lm_eval_cli_validates_and_runs_every_config(tiny_model_dir, bb_dir, tmp_path):
    """`lm_eval validate` on every new config, and `lm_eval run` of the group
    (all 10 tasks, --limit 2) on a tiny local model; the two CLI calls run side
    by side (each spends ~10 s indexing lm-eval's own tasks on one core)."""
    from analysis.ingest import read_instances

    names = list(TASK_NAMES.values()) + GROUPS
    configs = sorted(p.name for p in (task_dir() / "passuntil").glob("bigbench_*.yaml"))
    assert len(configs) == len(names)  # every new config is among those validated
    validate = subprocess.Popen([sys.executable, "-m", "lm_eval", "validate", "--tasks", ",".join(names),
                                 "--include_path", str(task_dir())], env=offline_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--device", "cpu",
           "--tasks", "passuntil_bigbench", "--include_path", str(task_dir()), "--limit", "2",
           "--gen_kwargs", "max_gen_toks=4", "--batch_size", "8", "--log_samples", "--output_path", str(out),
           "--metadata", json.dumps({"bigbench_source": str(bb_dir)})]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=600)
        v_out, v_err = validate.communicate(timeout=300)
    finally:
        if validate.poll() is None:
            validate.kill()
            validate.communicate()
    assert validate.returncode == 0, v_out[-2000:] + v_err[-2000:]
    assert "All tasks found and valid" in v_out
    assert proc.returncode == 0, proc.stderr[-4000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    for task in TASK_NAMES.values():
        m = results["results"][task]
        assert m["n_samples,passuntil"] == 20  # 2 docs x 10 repeats, all kept
        assert m["pu,passuntil"] <= m["pu_upper,passuntil"]
        assert 0.0 <= m["pu,passuntil"] <= 1.0 and "pass@1,passuntil" in m
    assert "pu,passuntil" in results["results"]["passuntil_bigbench"]
    counts = read_instances(out)
    assert sorted(set(counts["task"])) == sorted(TASK_NAMES.values())
    assert len(counts) == 20 and set(counts["n"]) == {10} and (counts["c"] <= 10).all()
    for f in out.rglob("samples_*.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            assert rec["n_passed"] == rec["filtered_resps"][0].count("passed")
            assert "choice" not in rec["arguments"]["gen_args_0"]["arg_0"]


# ---------------------------------------------------------------- the real BIG-bench files

@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/bigbench is not here")
def test_real_task_files():
    sizes = {"emoji_movie": 100, "date_understanding": 369, f"{ICL}/dates": 16800,
             f"{ICL}/dates_unnatural_content": 10000, f"{ICL}/dates_unnatural_content_and_form": 10000,
             f"{ICL}/dates_unnatural_form": 16800, f"{ICL}/identity": 6720,
             f"{ICL}/reverse_natural_content": 2500, f"{ICL}/reverse_to_natural_content": 2500,
             f"{ICL}/unnatural_addition_2_digit": 8100}
    examples = {}
    for task, n in sizes.items():
        examples[task], _ = bb.load_examples(task, str(REAL))
        assert len(examples[task]) == n, task
    raw = json.loads((REAL / "emoji_movie" / "task.json").read_text())["examples"]
    assert [e.targets for e in examples["emoji_movie"]] == [(r["target"],) for r in raw]
    assert all(len(e.targets) == 1 and len(e.choices) in (5, 6) and re.fullmatch(r"\d\d/\d\d/\d{4}", e.targets[0])
               for e in examples["date_understanding"])
    # The hub's concatenated Unnatural ICL config, rebuilt from the real files, splits back exactly.
    rows = [r for s in bb.ICL_SUBTASKS
            for r in hub_rows(json.loads((REAL / ICL / s / "task.json").read_text()))]
    split = bb.split_icl_rows(rows, "fake hub")
    for s in bb.ICL_SUBTASKS:
        assert split[s] == examples[f"{ICL}/{s}"], s
    docs = bb.build_docs("date_understanding", examples["date_understanding"])
    assert all(d["prompt"].endswith("\nA:") and "choice" not in d["prompt"] for d in docs)
