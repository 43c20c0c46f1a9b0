"""Adaptive sample-until-pass: the schedule, the stopping rules and the state.

PassUntil (Hu et al. 2023) keeps sampling an instance until it has passed r
times, so a pass rate of 1e-4 is measured instead of rounded to 0, without
spending samples on instances that pass easily. This module is the engine's
logic, independent of how samples are drawn: :mod:`lm_eval_ext.sampling.runner`
draws them through lm-eval; the tests draw them from a simulated Bernoulli
population.

Rounds. Every unresolved instance draws its next batch in a round. Until its
first pass, batches grow geometrically (``first``, then x ``growth`` each
round) up to the per-instance ``cap``; once it has passed c >= 1 times, the
next batch is at most what the remaining r - c passes should take at the rate
c/n (rounded up to a power of two). An instance with pass rate p is resolved
after O(log(r/p)) rounds and about r/p samples.
Outcomes are kept in sampling order, so the stopping point K (the sample at
which the r-th pass came) is exact even when it fell inside a round.

Stopping rules (per instance, checked at the end of each round; whichever
comes first):

* ``r`` passes (the paper's rule), with the exact negative-binomial interval
  on (r, K);
* ``cap`` samples: censored when nothing passed (estimate None, one-sided upper
  bound), else a Clopper-Pearson interval on (n, c);
* ``rel_precision`` (optional): stop once the interval's half-width is at most
  this fraction of c/n (needs at least one pass);
* ``budget`` (optional, global): total samples for the whole task; when a
  round's plan does not fit, the remaining budget goes to the instances whose
  next batch most reduces the variance of the task's mean PU.

The PU reported for an instance, whatever stopped it, is one estimator: the
design's unbiased estimate from every sample drawn, samples after the r-th
pass included (:func:`lm_eval_ext.passuntil.stats.pu_sequential`; ``StopRule`` is
its design). ``c/n`` would be biased upward by 10-65% under this stopping
rule, and Haldane's ``(r-1)/(K-1)`` (reported as ``pu_rK``) ignores the samples
after K. An instance that a global budget cut short did not follow the design
and gets ``c/n``.

State is a plain JSON document (outcomes as strings of 1/0), written
atomically after every chunk of work, so a run killed at any point resumes
with nothing finished lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future

from ..conventions.files import write_json_atomic
from ..passuntil.stats import DesignTooLarge, InstanceEstimate, TaskEstimate, estimate_instance, pass_at_k, task_pu

STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class StopRule:
    r: int = 2
    cap: int = 10_000
    first: int = 8
    growth: float = 2.0
    rel_precision: float | None = None
    budget: int | None = None
    alpha: float = 0.05

    def __post_init__(self):
        if not (isinstance(self.r, int) and self.r >= 1):
            raise ValueError(f"r must be an integer >= 1, got {self.r!r}")
        if not (isinstance(self.cap, int) and self.cap >= 1):
            raise ValueError(f"cap must be an integer >= 1, got {self.cap!r}")
        if not (isinstance(self.first, int) and 1 <= self.first):
            raise ValueError(f"first must be an integer >= 1, got {self.first!r}")
        if not (self.growth > 1.0):
            raise ValueError(f"growth must be > 1, got {self.growth!r}")
        if self.rel_precision is not None and not (0 < self.rel_precision < 1):
            raise ValueError(f"rel_precision must be in (0, 1), got {self.rel_precision!r}")
        if self.budget is not None and not (isinstance(self.budget, int) and self.budget >= 1):
            raise ValueError(f"budget must be an integer >= 1, got {self.budget!r}")
        if not (0 < self.alpha < 1):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")

    def target_n(self, round_index: int) -> int:
        """Samples an unresolved instance should hold after round ``round_index``."""
        return min(self.cap, int(round(self.first * self.growth ** round_index)))

    # The per-instance design (lm_eval_ext.passuntil.stats.SequentialDesign): what
    # an open instance draws in a round, and when it stops. The global budget
    # is not part of it (it couples instances); see AdaptiveState.plan.
    def batch(self, round_index: int, n: int, c: int) -> int:
        """Samples an open instance with ``c`` passes in ``n`` draws in round ``round_index``."""
        target = self.target_n(round_index)
        if c == 0 or self.rel_precision is not None:
            # Nothing known yet (or a precision target): grow geometrically,
            # at least one more sample (slow growth can round to none).
            want = max(target, n + 1)
        else:
            # Some passes: no more than the remaining r - c passes should
            # take at the rate c/n (rounded up to a power of two: fewer
            # distinct batch sizes, fewer lm-eval calls), and no more than
            # the geometric step, since c/n from few passes is noisy. Less
            # is drawn past the r-th pass than by blind doubling.
            need = math.ceil((self.r - c) * n / c)
            want = min(max(target, n + 1), n + (1 << max(0, need - 1).bit_length()))
        return max(0, min(self.cap, want) - n)

    def stop_reason(self, n: int, c: int) -> str | None:
        """Why an instance with ``c`` passes in ``n`` stops at a round's end (None: it goes on)."""
        if c >= self.r:
            return "r_passes"
        if self.rel_precision is not None and c >= 1:
            e = estimate_instance(n, c, alpha=self.alpha)
            if (e.upper - e.lower) / 2 <= self.rel_precision * e.estimate:
                return "precision"
        if n >= self.cap:
            return "cap"
        return None

    def stops(self, n: int, c: int) -> bool:
        return self.stop_reason(n, c) is not None

    @property
    def r_or_cap(self) -> bool:
        """Stops only at the r-th pass or the cap (no precision rule)."""
        return self.rel_precision is None

    def follows(self, outcomes: str) -> bool:
        """Whether an instance's outcomes are a path of this design from its
        first round to a stop (not when a global budget skipped or cut it)."""
        n = c = k = 0
        while not self.stops(n, c):
            m = self.batch(k, n, c)
            if m < 1 or n + m > len(outcomes):
                return False
            c += outcomes.count("1", n, n + m)
            n, k = n + m, k + 1
        return n == len(outcomes)


@dataclasses.dataclass
class Instance:
    """One instance's sample history. ``outcomes`` is a string of '1'/'0' in
    sampling order (compact and JSON-friendly)."""

    outcomes: str = ""
    stop: str | None = None  # why it stopped: r_passes, cap, precision, budget

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @property
    def c(self) -> int:
        return self.outcomes.count("1")

    def k_at(self, r: int) -> int | None:
        """1-based index of the r-th pass, or None."""
        pos = -1
        for _ in range(r):
            pos = self.outcomes.find("1", pos + 1)
            if pos < 0:
                return None
        return pos + 1

    def estimate(self, rule: StopRule) -> InstanceEstimate:
        """The instance's PU: the design's unbiased estimate (every sample
        used, see :func:`lm_eval_ext.passuntil.stats.pu_sequential`) when the
        instance followed the design; ``c/n`` when a global budget cut it
        (its schedule then depended on other instances)."""
        K = self.k_at(rule.r) if self.stop == "r_passes" else None
        design = rule if self.n and rule.follows(self.outcomes) else None
        kw = dict(r=rule.r if K else None, K=K, alpha=rule.alpha)
        try:
            return estimate_instance(self.n, self.c, design=design, **kw)
        except DesignTooLarge:  # r in the hundreds: c/n, whose bias is O(1/c)
            return estimate_instance(self.n, self.c, **kw)


def derive_seed(*parts) -> int:
    """A 31-bit seed from the run's seed and a position (round, chunk): the
    same position always gets the same seed, so a resumed run redraws exactly
    what an uninterrupted one would have."""
    h = hashlib.sha256(json.dumps(parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


class AdaptiveState:
    """Everything needed to resume: settings, per-instance outcomes, progress."""

    def __init__(self, doc_ids: Iterable[int], rule: StopRule, seed: int, settings: Mapping | None = None):
        self.rule = rule
        self.seed = int(seed)
        self.settings = dict(settings or {})
        self.info: dict = {}  # facts found during the run (e.g. the model's size), not compared on resume
        self.instances: dict[int, Instance] = {int(d): Instance() for d in doc_ids}
        if not self.instances:
            raise ValueError("no instances to sample")
        self.round = 0
        self.chunks_done: list[int] = []  # chunk indices finished within the current round
        # The current round's plan, fixed when the round starts: the chunks recorded so far
        # change the counts plan() reads, so a round resumed half-way must not re-plan.
        self.current_plan: dict[int, int] | None = None
        self.finished = False
        # Where the finished run's outputs are (file names relative to the
        # model's output directory), recorded before they are written: a rerun
        # of a finished run then writes nothing new.
        self.outputs: dict | None = None

    # ----------------------------------------------------------- planning
    @property
    def spent(self) -> int:
        return sum(i.n for i in self.instances.values())

    def open_ids(self) -> list[int]:
        return sorted(d for d, i in self.instances.items() if i.stop is None)

    def plan(self) -> dict[int, int]:
        """Samples to draw this round per open instance (empty: nothing to do)."""
        plan = {}
        for d in self.open_ids():
            inst = self.instances[d]
            m = self.rule.batch(self.round, inst.n, inst.c)
            if m > 0:
                plan[d] = m
        if self.rule.budget is not None:
            plan = self._fit_budget(plan)
        return plan

    def round_plan(self) -> dict[int, int]:
        """This round's plan: :meth:`plan` as it was when the round started
        (kept in the state, so a resumed round draws exactly its lost chunks)."""
        if self.current_plan is None:
            self.current_plan = self.plan()
        return dict(self.current_plan)

    def _fit_budget(self, plan: dict[int, int]) -> dict[int, int]:
        left = self.rule.budget - self.spent
        if sum(plan.values()) <= left:
            return plan

        # Variance of the task mean is sum p(1-p)/n / M^2; drawing m more
        # samples for instance i removes p(1-p) (1/n - 1/(n+m)). Per sample
        # spent, fund the largest reductions first. p from a Jeffreys-like
        # (c + 1/2) / (n + 1) so that instances without passes still count.
        def gain(d):
            inst = self.instances[d]
            p = (inst.c + 0.5) / (inst.n + 1)
            before = 1.0 / inst.n if inst.n else 1.0
            return p * (1 - p) * (before - 1.0 / (inst.n + plan[d])) / plan[d]

        funded = {}
        for d in sorted(plan, key=lambda d: (-gain(d), d)):
            if plan[d] <= left:
                funded[d] = plan[d]
                left -= plan[d]
        return funded

    # ------------------------------------------------------------ updates
    def record(self, outcomes: Mapping[int, Iterable[bool]]) -> None:
        """Append drawn outcomes (in sampling order) for some instances."""
        for d, outs in outcomes.items():
            inst = self.instances[int(d)]
            inst.outcomes += "".join("1" if o else "0" for o in outs)

    def end_round(self) -> None:
        """Apply the stopping rules, advance the round, mark budget exhaustion."""
        for inst in self.instances.values():
            if inst.stop is None:
                inst.stop = self.rule.stop_reason(inst.n, inst.c)
        self.round += 1
        self.chunks_done = []
        self.current_plan = None
        if not self.plan():
            for inst in self.instances.values():
                if inst.stop is None:
                    inst.stop = "budget"
            self.finished = True

    # ------------------------------------------------------------ summary
    def estimates(self) -> dict[int, InstanceEstimate]:
        return {d: i.estimate(self.rule) for d, i in self.instances.items()}

    def task_estimate(self) -> TaskEstimate:
        return task_pu(self.estimates().values())

    def summary(self, ks: Iterable[int] = (1,), estimates: Mapping[int, InstanceEstimate] | None = None) -> dict:
        """Task-level numbers, the metrics of the task configs (lm_eval_ext.passuntil.metrics)."""
        from ..passuntil.metrics import upper_bound

        est = task_pu((estimates or self.estimates()).values())
        insts = self.instances.values()
        out = {"pu": est.mean, "pu_stderr": est.stderr if est.stderr is not None else "N/A",
               "pu_censored": est.n_censored / est.n_instances,
               "pu_upper": sum(upper_bound(i.n, i.c, self.rule.alpha) for i in insts) / len(insts),
               "n_samples": self.spent, "n_passed": sum(i.c for i in insts)}
        for k in ks:
            vals = [float(pass_at_k(i.n, i.c, k)) for i in self.instances.values() if i.n >= k]
            if len(vals) == len(self.instances):
                out[f"pass@{k}"] = sum(vals) / len(vals)
        return out

    def progress(self) -> dict:
        n_open = len(self.open_ids())
        return {"round": self.round, "resolved": len(self.instances) - n_open, "open": n_open,
                "spent": self.spent, "left_estimate": self.remaining_estimate()}

    def remaining_estimate(self) -> int:
        """Rough samples still to draw: for each open instance, what r passes
        would take at its current pass-rate estimate, within its cap."""
        rule, total = self.rule, 0
        for d in self.open_ids():
            inst = self.instances[d]
            p = (inst.c + 0.5) / (inst.n + 1)
            total += max(0, min(rule.cap, math.ceil(rule.r / p)) - inst.n)
        if rule.budget is not None:
            total = min(total, max(0, rule.budget - self.spent))
        return total

    # -------------------------------------------------------- persistence
    def to_json(self) -> dict:
        return {"version": STATE_VERSION, "rule": dataclasses.asdict(self.rule), "seed": self.seed,
                "settings": self.settings, "info": self.info, "round": self.round, "chunks_done": self.chunks_done,
                "plan": None if self.current_plan is None else {str(d): m for d, m in sorted(self.current_plan.items())},
                "finished": self.finished, "outputs": self.outputs,
                "instances": {str(d): dataclasses.asdict(i) for d, i in sorted(self.instances.items())}}

    @classmethod
    def from_json(cls, data: Mapping) -> "AdaptiveState":
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"state file version {data.get('version')!r} is not {STATE_VERSION}")
        self = cls([0], StopRule(**data["rule"]), data["seed"], data.get("settings"))
        self.instances = {int(d): Instance(**v) for d, v in data["instances"].items()}
        self.info = dict(data.get("info", {}))
        self.round = int(data["round"])
        self.chunks_done = [int(c) for c in data.get("chunks_done", [])]
        plan = data.get("plan")  # absent in states written before it was kept: re-planned (as then)
        self.current_plan = None if plan is None else {int(d): int(m) for d, m in plan.items()}
        self.finished = bool(data.get("finished"))
        outputs = data.get("outputs")
        self.outputs = dict(outputs) if isinstance(outputs, Mapping) else None
        return self

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AdaptiveState":
        with open(path, encoding="utf-8") as f:
            try:
                return cls.from_json(json.load(f))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: not a readable adaptive-sampling state ({exc})") from None


Draw = Callable[[dict[int, int], int], "Mapping[int, Iterable[bool]] | Future"]


def run_schedule(state: AdaptiveState, draw: Draw, *, chunk_samples: int = 4096,
                 save: Callable[[AdaptiveState], None] | None = None,
                 on_progress: Callable[[AdaptiveState], None] | None = None) -> AdaptiveState:
    """Drive rounds until every instance has stopped.

    ``draw(plan, seed)`` returns, for each instance in ``plan``, that many
    outcomes in sampling order. A round's plan is cut into chunks of at most
    ``chunk_samples`` samples (whole instances, in doc order); each chunk gets
    a seed derived from (run seed, round, chunk), and ``save`` is called after
    each chunk, so a resumed run redraws exactly the chunks that were lost.

    ``draw`` may instead return a :class:`concurrent.futures.Future` of those
    outcomes (the samples drawn, their scoring still running): the next chunk
    of the round is then drawn while that one is scored, so a checker and a
    generator overlap. Chunks are still recorded and saved one at a time in
    chunk order, and a round ends only when all its chunks are scored (the
    next round's plan depends on them), so the state, and everything derived
    from it, is the same as without overlap. When drawing a chunk fails, the
    chunk being scored is waited for and recorded first (nothing finished is
    lost); on Ctrl-C it is recorded only if its scoring has already finished.
    """
    def record(index: int, chunk: dict[int, int], drawn) -> None:
        if isinstance(drawn, Future):
            drawn = drawn.result()
        missing = [d for d in chunk if len(list(drawn.get(d, ()))) != chunk[d]]
        if missing:
            raise RuntimeError(f"the sampler returned the wrong number of outcomes for instances {missing[:5]}")
        state.record(drawn)
        state.chunks_done.append(index)
        if save is not None:
            save(state)
        if on_progress is not None:
            on_progress(state)

    while not state.finished:
        plan = state.round_plan()
        if not plan:
            state.end_round()
            continue
        scoring: list[tuple[int, dict[int, int], Future]] = []  # at most one chunk is being scored
        try:
            for index, chunk in enumerate(chunk_plan(plan, chunk_samples)):
                if index in state.chunks_done:
                    continue
                drawn = draw(chunk, derive_seed(state.seed, state.round, index))
                if scoring:
                    record(*scoring.pop())
                if isinstance(drawn, Future):
                    scoring.append((index, chunk, drawn))
                else:
                    record(index, chunk, drawn)
            if scoring:
                record(*scoring.pop())
        except Exception:
            if scoring:  # the failure is the next chunk's: keep what was scored
                record(*scoring.pop())
            raise
        except BaseException:
            if scoring and scoring[0][2].done() and scoring[0][2].exception() is None:
                record(*scoring.pop())
            raise
        state.end_round()
        if save is not None:
            save(state)
        if on_progress is not None:
            on_progress(state)
    return state


def chunk_plan(plan: Mapping[int, int], chunk_samples: int) -> list[dict[int, int]]:
    """Split a round's plan into chunks of at most ``chunk_samples`` samples
    (an instance larger than that gets a chunk of its own). Chunks hold one
    per-instance count each, so one lm-eval call (one ``repeats``) serves a chunk."""
    chunks: list[dict[int, int]] = []
    by_m: dict[int, list[int]] = {}
    for d in sorted(plan):
        by_m.setdefault(plan[d], []).append(d)
    for m in sorted(by_m):
        current: dict[int, int] = {}
        for d in by_m[m]:
            if current and (len(current) + 1) * m > chunk_samples:
                chunks.append(current)
                current = {}
            current[d] = m
        if current:
            chunks.append(current)
    return chunks
