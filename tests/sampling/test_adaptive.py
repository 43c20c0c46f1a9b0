"""The adaptive sample-until-pass engine on simulated populations (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lm_eval_ext.sampling.adaptive import AdaptiveState, StopRule, chunk_plan, derive_seed, run_schedule


def population(m, seed=0, lo=1e-4, hi=0.9):
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), m))


def bernoulli(p):
    def draw(plan, seed):
        g = np.random.default_rng(seed)
        return {d: (g.random(m) < p[d]).tolist() for d, m in plan.items()}

    return draw


@pytest.mark.parametrize("r", [2, 3])
def test_intervals_cover_at_the_nominal_rate(r):
    p = population(2000, seed=r)
    st = run_schedule(AdaptiveState(range(len(p)), StopRule(r=r, cap=10_000), seed=7), bernoulli(p))
    est = st.estimates()
    covered = [e.lower <= p[d] <= e.upper for d, e in est.items() if not e.censored]
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)
    # Censored (no pass within the cap) only where the cap cannot see p:
    # P(no pass in 10^4 draws) is below 1e-6 for p > 1.4e-3.
    censored_p = [p[d] for d, e in est.items() if e.censored]
    assert censored_p and max(censored_p) < 1.4e-3
    for d, e in est.items():
        if e.censored:
            assert st.instances[d].n == 10_000 and e.estimate is None and 0 < e.upper < 1e-3


def test_unbiased_estimator_and_budget_use():
    p = population(3000, seed=11, lo=1e-3, hi=0.5)
    st = run_schedule(AdaptiveState(range(len(p)), StopRule(r=3, cap=100_000), seed=3), bernoulli(p))
    ratios = [est.estimate / p[d] for d, est in st.estimates().items()]
    # (r-1)/(K-1) is unbiased: the mean ratio to the truth is 1 within MC error.
    assert abs(np.mean(ratios) - 1) < 4 * np.std(ratios) / np.sqrt(len(ratios))
    # Samples spent are about r/p per instance, at most `growth` times more.
    spent = np.array([st.instances[d].n for d in range(len(p))])
    assert np.all(spent <= np.maximum(2 * 3 / p * 8, 8))  # generous: K is random
    assert 0.8 < np.median(spent * p / 3) < 2.5


def test_rounds_grow_geometrically_and_chunks_are_uniform():
    st = AdaptiveState(range(5), StopRule(first=4, growth=2.0, cap=100), seed=0)
    assert st.plan() == {d: 4 for d in range(5)}
    st.record({d: [False] * 4 for d in range(5)})
    st.end_round()
    assert st.plan() == {d: 4 for d in range(5)}  # to 8
    chunks = chunk_plan({0: 8, 1: 8, 2: 8, 3: 16, 4: 100}, chunk_samples=20)
    assert chunks == [{0: 8, 1: 8}, {2: 8}, {3: 16}, {4: 100}]
    assert all(len(set(c.values())) == 1 for c in chunks)


def test_cap_and_slow_growth_never_stall():
    st = AdaptiveState([0], StopRule(first=1, growth=1.01, cap=5), seed=0)
    run_schedule(st, lambda plan, seed: {d: [False] * m for d, m in plan.items()})
    assert st.instances[0].n == 5 and st.instances[0].stop == "cap"


def test_relative_precision_rule_stops_precise_instances():
    p = np.array([0.5, 0.05])
    rule = StopRule(r=10**6, cap=50_000, rel_precision=0.2)
    st = run_schedule(AdaptiveState([0, 1], rule, seed=1), bernoulli(p))
    for d in (0, 1):
        inst = st.instances[d]
        e = st.estimates()[d]
        assert inst.stop == "precision"
        assert (e.upper - e.lower) / 2 <= 0.2 * e.estimate
    assert st.instances[1].n > st.instances[0].n  # the rarer one needed more samples


def test_global_budget_is_respected_and_spent_where_it_buys_precision():
    p = np.array([0.5, 0.3, 1e-4, 1e-4])
    st = run_schedule(AdaptiveState(range(4), StopRule(r=10**6, cap=10**6, budget=2000), seed=2), bernoulli(p))
    assert st.spent <= 2000
    assert {i.stop for i in st.instances.values()} == {"budget"}
    # The variance of the mean PU is dominated by the p ~ 0.5 instances.
    assert st.instances[0].n >= st.instances[2].n


def test_kill_and_resume_gives_identical_counts(tmp_path):
    p = population(300, seed=5, lo=1e-3, hi=0.9)
    rule = StopRule(r=2, cap=5000)
    ref = run_schedule(AdaptiveState(range(300), rule, seed=9), bernoulli(p), chunk_samples=500)

    path = tmp_path / "state.json"
    calls = {"n": 0}

    class Killed(Exception):
        pass

    def dying(plan, seed):
        calls["n"] += 1
        if calls["n"] == 7:
            raise Killed  # as if SIGKILLed mid-chunk: the chunk's draws are lost
        return bernoulli(p)(plan, seed)

    st = AdaptiveState(range(300), rule, seed=9)
    with pytest.raises(Killed):
        run_schedule(st, dying, chunk_samples=500, save=lambda s: s.save(path))
    resumed = AdaptiveState.load(path)
    assert 0 < resumed.spent < ref.spent
    run_schedule(resumed, bernoulli(p), chunk_samples=500, save=lambda s: s.save(path))
    assert {d: i.outcomes for d, i in resumed.instances.items()} == \
        {d: i.outcomes for d, i in ref.instances.items()}
    assert json.loads(path.read_text())["finished"] is True


def test_a_round_resumed_half_way_keeps_its_plan(tmp_path):
    """Chunks recorded before the kill change the counts the plan is made from; the
    resumed round must draw the lost chunks of the plan it started with (a regression:
    it used to re-plan, giving the recorded instances another batch and shifting chunks)."""
    p = population(40, seed=4)
    rule = StopRule(r=2, cap=256)
    ref = run_schedule(AdaptiveState(range(40), rule, seed=5), bernoulli(p), chunk_samples=32)
    path = tmp_path / "state.json"
    calls = []

    def dying(plan, seed):
        calls.append(plan)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return bernoulli(p)(plan, seed)

    st = AdaptiveState(range(40), rule, seed=5)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(st, dying, chunk_samples=32, save=lambda s: s.save(path))
    resumed = AdaptiveState.load(path)
    assert resumed.round == 0 and resumed.chunks_done == [0, 1]
    run_schedule(resumed, bernoulli(p), chunk_samples=32)
    assert resumed.to_json()["instances"] == ref.to_json()["instances"]
    assert resumed.spent == ref.spent


def test_seeds_depend_on_position_only():
    assert derive_seed(1, 0, 0) == derive_seed(1, 0, 0)
    assert len({derive_seed(1, r, c) for r in range(20) for c in range(20)}) == 400


def test_bad_rules_and_states_raise(tmp_path):
    with pytest.raises(ValueError, match="growth must be > 1"):
        StopRule(growth=1.0)
    with pytest.raises(ValueError, match="r must be an integer >= 1"):
        StopRule(r=0)
    with pytest.raises(ValueError, match="no instances"):
        AdaptiveState([], StopRule(), seed=0)
    bad = tmp_path / "s.json"
    bad.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="not a readable adaptive-sampling state"):
        AdaptiveState.load(bad)
    st = AdaptiveState([0, 1], StopRule(), seed=0)
    with pytest.raises(RuntimeError, match="wrong number of outcomes"):
        run_schedule(st, lambda plan, seed: {0: [True]})
