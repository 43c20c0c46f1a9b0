"""Batch checking: deduplication, the persistent verdict cache, bad input, and
the `lm-eval-ext check` command."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from lm_eval_ext.execution import Limits, Verdict, VerdictCache, check_completions, checker

ADD = {"task_id": "t/add", "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
       "entry_point": "add"}
GOOD, BAD = "    return a + b\n", "    return a - b\n"


@pytest.fixture
def counting(monkeypatch):
    calls = []
    real = checker.run_program

    def run(prompt, completion, test, entry_point, limits):
        calls.append(completion)
        return real(prompt, completion, test, entry_point, limits)

    monkeypatch.setattr(checker, "run_program", run)
    return calls


def test_duplicates_execute_once(counting):
    items = [(ADD, GOOD)] * 30 + [(ADD, BAD)] * 20 + [(ADD, GOOD)]
    verdicts = check_completions(items, workers=2)
    assert [v.passed for v in verdicts] == [True] * 30 + [False] * 20 + [True]
    assert sorted(counting) == sorted([GOOD, BAD])


def test_same_completion_other_problem_is_not_shared(counting):
    other = dict(ADD, test="def check(candidate):\n    assert candidate(2, 3) == 6\n")
    v = check_completions([(ADD, GOOD), (other, GOOD)])
    assert [x.passed for x in v] == [True, False]
    assert len(counting) == 2


def test_cache_file_resumes_without_reexecuting(tmp_path, counting):
    path = tmp_path / "verdicts.jsonl"
    cache = VerdictCache(path)
    check_completions([(ADD, GOOD), (ADD, BAD)], cache=cache)
    cache.close()
    assert len(counting) == 2
    # A run killed mid-write leaves a torn last line: it is ignored.
    with open(path, "a") as f:
        f.write('{"key": "abc", "sta')
    cache2 = VerdictCache(path)
    v = check_completions([(ADD, GOOD), (ADD, BAD), (ADD, "    return b + a\n")], cache=cache2)
    cache2.close()
    assert [x.passed for x in v] == [True, False, True]
    assert len(counting) == 3  # only the new program ran


def test_sandbox_errors_are_not_persisted(tmp_path):
    path = tmp_path / "v.jsonl"
    cache = VerdictCache(path)
    cache.put("k1", Verdict("sandbox_error", "launcher crashed"))
    cache.put("k2", Verdict("failed", "AssertionError"))
    cache.close()
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["k2"]


def test_limits_are_part_of_the_key():
    a = checker.program_key(ADD, GOOD, Limits(timeout=1.0))
    b = checker.program_key(ADD, GOOD, Limits(timeout=2.0))
    assert a != b


def test_bad_items_raise_clear_errors():
    with pytest.raises(ValueError, match="item 0 lacks string field"):
        check_completions([({"prompt": "x"}, GOOD)])
    with pytest.raises(TypeError, match="item 1: completion must be a str"):
        check_completions([(ADD, GOOD), (ADD, None)])


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lm_eval_ext", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_check_command_scores_samples(tmp_path):
    problems = tmp_path / "problems.jsonl.gz"
    with gzip.open(problems, "wt") as f:
        f.write(json.dumps(ADD) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": "t/add", "completion": c, "extra": i}) + "\n"
                               for i, c in enumerate([GOOD, BAD, GOOD, "    while True: pass\n"])))
    refused = _cli("check", str(samples), "--problems", str(problems), cwd=tmp_path)
    assert refused.returncode == 2 and "--confirm_run_unsafe_code" in refused.stderr
    out = tmp_path / "verdicts.jsonl"
    done = _cli("check", str(samples), "--problems", str(problems), "--output_path", str(out), "--timeout", "1",
                "--confirm_run_unsafe_code", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["passed", "failed", "passed", "timeout"]
    assert [r["extra"] for r in rows] == [0, 1, 2, 3]  # the sample's own fields are kept
    assert "n=4 c=2" in done.stdout


def test_check_command_rejects_unknown_task_and_bad_lines(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/99999", "completion": GOOD}) + "\n")
    r = _cli("check", str(samples), "--confirm_run_unsafe_code", cwd=tmp_path)
    assert r.returncode != 0 and "HumanEval/99999" in r.stderr
    samples.write_text('{"task_id": "HumanEval/0"}\nnot json\n')
    r = _cli("check", str(samples), "--confirm_run_unsafe_code", cwd=tmp_path)
    assert r.returncode != 0 and "s.jsonl:1" in r.stderr


def test_filter_keeps_every_repeat_in_order():
    from lm_eval_ext.passuntil.filters import PassUntilExecuteFilter

    out = PassUntilExecuteFilter(timeout=2).apply([[GOOD, BAD, GOOD], [BAD]], [ADD, ADD])
    assert out == [["passed", "failed", "passed"], ["failed"]]


def test_filter_code_block_runs_the_code_of_a_chat_answer():
    """passuntil_humaneval_instruct: the answer's first fenced block (closed,
    left open by the stop sequence, or none) runs after the prompt; a full
    def redefines the prompt's function, an indented body continues it."""
    from lm_eval_ext.passuntil.filters import PassUntilExecuteFilter, chat_code

    full = "Here is the solution:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds."
    open_block = "```python\ndef add(a, b):\n    return b + a"
    body = "    return a + b"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    prose = "The function adds its arguments."
    assert chat_code(full) == "\ndef add(a, b):\n    return a + b\n"
    out = PassUntilExecuteFilter(timeout=5, code_block=True).apply([[full, open_block, body, wrong, prose]], [ADD])
    assert out == [["passed", "passed", "passed", "failed", "failed"]]
    assert PassUntilExecuteFilter(timeout=5).apply([[full]], [ADD]) == [["failed"]]  # not without the option


def test_filter_refuses_to_score_when_the_sandbox_is_broken(monkeypatch):
    from lm_eval_ext.passuntil.filters import PassUntilExecuteFilter

    monkeypatch.setattr(checker, "run_program", lambda *a, **k: Verdict("sandbox_error", "landlock failed"))
    with pytest.raises(RuntimeError, match="could not run 2 of 2 programs.*landlock failed"):
        PassUntilExecuteFilter().apply([[GOOD, BAD]], [ADD])


def test_filter_options_and_fields_are_checked():
    from lm_eval_ext.passuntil.filters import PassUntilExecuteFilter

    with pytest.raises(ValueError, match="unknown option"):
        PassUntilExecuteFilter(timout=3)
    with pytest.raises(ValueError, match=r"document 0 lacks field\(s\) \['test'\]"):
        PassUntilExecuteFilter().apply([[GOOD]], [{"prompt": "x", "entry_point": "f"}])


def test_programs_that_do_not_parse_fail_without_a_sandbox(monkeypatch):
    from lm_eval_ext.execution import run_program, sandbox

    def no_spawn(*a, **k):
        raise AssertionError("a sandbox was started for a program that does not parse")

    monkeypatch.setattr(sandbox, "_spawn", no_spawn)
    for bad in ("    return a +\n", "    return a\x00\n", "    return " + "(" * 300 + "a" + ")" * 300 + "\n"):
        v = run_program(ADD["prompt"], bad, ADD["test"], "add")
        assert v.status == "failed" and v.detail.startswith("program did not load")


def test_a_check_in_a_background_thread_can_be_cancelled(counting, monkeypatch):
    """cancel_checks drops the queued programs of a check another thread runs (the
    engine's overlapped scoring, on Ctrl-C): it ends after the running program,
    instead of running all the rest before the interpreter can exit."""
    import threading
    import time
    from concurrent.futures import CancelledError

    real = checker.run_program

    def slow(prompt, completion, test, entry_point, limits):
        time.sleep(0.2)
        return real(prompt, completion, test, entry_point, limits)

    monkeypatch.setattr(checker, "run_program", slow)
    items = [(ADD, f"    return a + b + {i} - {i}\n") for i in range(30)]
    outcome = {}

    def check():
        try:
            outcome["verdicts"] = check_completions(items, workers=1)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(counting) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    checker.cancel_checks(thread)
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), CancelledError), outcome
    assert 2 <= len(counting) <= 4  # the running program finished; the queued ones never ran
    checker.cancel_checks(thread)  # nothing running there any more: a no-op


def test_a_cancel_that_comes_as_the_first_program_starts_still_drops_the_rest(monkeypatch):
    """The race CI hit: the first program already ran when cancel_checks came,
    before the check had registered its queue. Submitting and registering are
    one step now, so a cancel from inside the first program drops all the rest."""
    import threading
    from concurrent.futures import CancelledError

    real = checker.run_program
    ran, outcome, owner = [], {}, []

    def first_cancels(prompt, completion, test, entry_point, limits):
        ran.append(completion)
        if len(ran) == 1:
            checker.cancel_checks(owner[0])
        return real(prompt, completion, test, entry_point, limits)

    monkeypatch.setattr(checker, "run_program", first_cancels)
    items = [(ADD, f"    return a + b + {i} - {i}\n") for i in range(30)]

    def check():
        try:
            outcome["verdicts"] = check_completions(items, workers=1)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    for _ in range(5):  # the window was a scheduling accident: try it a few times
        ran.clear()
        outcome.clear()
        thread = threading.Thread(target=check, daemon=True)
        owner[:] = [thread]
        thread.start()
        thread.join(20)
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), CancelledError), outcome
        assert len(ran) == 1, len(ran)


def test_a_thread_cancelled_before_its_check_starts_runs_none_of_it(counting):
    """Ctrl-C while the scoring thread is still preparing its check (before any
    program is queued): the check it then starts is refused, nothing runs."""
    import threading
    from concurrent.futures import CancelledError

    go, outcome = threading.Event(), {}

    def check():
        go.wait(10)
        try:
            outcome["verdicts"] = check_completions([(ADD, GOOD), (ADD, BAD)], workers=1)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    checker.cancel_checks(thread)
    go.set()
    thread.join(10)
    assert isinstance(outcome.get("error"), CancelledError), outcome
    assert counting == []
    # the mark belongs to that thread only: another thread checks as usual
    assert [v.passed for v in check_completions([(ADD, GOOD), (ADD, BAD)], workers=1)] == [True, False]
