"""BIG-bench tasks of Hu et al. (2023) as generative, exact-match PassUntil tasks.

Emoji Movie, Date Understanding and the 8 subtasks of Unnatural In-Context
Learning, turned into documents for ``custom_dataset`` (see
``task_configs/passuntil/_bigbench_template_yaml``).

Data source, chosen without editing a YAML (first match wins):

1. ``--metadata '{"bigbench_source": SOURCE}'`` on the lm_eval command line,
2. the environment variable ``LM_EVAL_EXT_BIGBENCH=SOURCE``,
3. ``hub``.

SOURCE is ``hub`` (the Hugging Face dataset ``hails/bigbench``, the one
lm-eval's own ``bigbench_*`` tasks read), ``hub:OWNER/NAME`` (another repo with
the same layout), or a local directory laid out like BIG-bench's
``bigbench/benchmark_tasks/`` (``<dir>/emoji_movie/task.json``,
``<dir>/unnatural_in_context_learning/<subtask>/task.json``, ...), e.g. from the
``bigbench`` sdist on PyPI or a clone of google/BIG-bench.

The hub dataset cannot be downloaded on the machines this was written on, so
its layout is an assumption, validated row by row and tested with fake
datasets. Known (lm-eval's tasks/bigbench/push_bigbench_dataset.py made it with
``datasets.load_dataset("bigbench", name=task, num_shots=0)``; its dataset
card): config ``<task>_zero_shot``, split ``default`` (all examples), columns
``idx``, ``inputs`` (str), ``targets`` (list of str),
``multiple_choice_targets`` (list of str), ``multiple_choice_scores`` (list
of int). Assumed: ``inputs`` is the example formatted by BIG-bench's zero-shot
formatter (``"Q: <input>\n  choice: ...\nA: "``, with the task's own
prefixes), from which the raw input is recovered (prefixes and options
removed); and Unnatural ICL is ONE config holding the 8 subtasks one after
the other, without a subtask column. They are told apart by the format of
their inputs and targets, and the two ``reverse`` subtasks (mirror images of
each other, inseparable row by row) by order: the six identifiable subtasks
must come in BIG-bench's alphabetical order, and the reverse block must split
into two mirror-image halves. Any departure is a ValueError that says to use a
local copy, never a silent guess.

Documents (one per example) hold ``prompt`` (what the model sees), ``target``
(every acceptable answer), ``answer`` (the first one), ``input`` (the raw
BIG-bench input), ``choices`` (the original options, never shown),
``bigbench_task`` and ``bigbench_index`` (position in the source's example list).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HUB_REPO = "hails/bigbench"
HUB_SPLIT = "default"
ENV_VAR = "LM_EVAL_EXT_BIGBENCH"
ICL = "unnatural_in_context_learning"
#: Alphabetical: the order BIG-bench (and so the hub's concatenation) lists them.
ICL_SUBTASKS = ("dates", "dates_unnatural_content", "dates_unnatural_content_and_form", "dates_unnatural_form",
                "identity", "reverse_natural_content", "reverse_to_natural_content",
                "unnatural_addition_2_digit")
#: BIG-bench's standard evaluation uses 0 to 3 shots; 3 shows the answer format most clearly.
DEFAULT_SHOTS = 3
DEFAULT_SEED = 1234


@dataclass(frozen=True)
class Format:
    """How an example is written: ``{input_prefix}{input}{output_prefix} {answer}``,
    examples joined by ``separator``. From the tasks' task.json files (BIG-bench's
    default ``Q:``/``A:`` where a task sets none), with trailing spaces moved
    into the answer delimiter so that prompts never end in a space."""

    input_prefix: str
    output_prefix: str
    separator: str


QA = Format("Q: ", "\nA:", "\n\n")
ICL_FORMAT = Format("Input: ", "\nOutput:", "\n")
ADDITION = Format("", "", "\n")  # "10 - 15 = 25": its task.json has empty prefixes

#: task name -> (path below the benchmark_tasks directory, format)
TASKS: dict[str, tuple[str, Format]] = {
    "emoji_movie": ("emoji_movie", QA),
    "date_understanding": ("date_understanding", QA),
    **{f"{ICL}/{s}": (f"{ICL}/{s}", ADDITION if s == "unnatural_addition_2_digit" else ICL_FORMAT)
       for s in ICL_SUBTASKS},
}


@dataclass(frozen=True)
class Example:
    input: str
    targets: tuple[str, ...]
    choices: tuple[str, ...]
    index: int


def _check_task(task: str) -> tuple[str, Format]:
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown BIG-bench task {task!r}; known: {', '.join(TASKS)}") from None


# ---------------------------------------------------------------- golds

def _strings(value, what: str, where: str) -> list[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}: {what} must be a string or a list of strings, got {value!r}")
    return list(values)


def golds(targets: Sequence[str], scores: Mapping[str, float] | None, where: str) -> tuple[str, ...]:
    """Every acceptable answer: the generative targets and the options with the
    top score (several when they tie). A target that is also an option with a
    lower score contradicts the scores and is refused (it would turn a wrong
    option into a pass); so is an empty answer (an empty generation would pass)
    and one of several lines (the checker compares first lines)."""
    out = list(targets)
    if scores:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
            raise ValueError(f"{where}: target_scores must map options to numbers, got {dict(scores)!r}")
        top = max(scores.values())
        if top > 0:
            best = [k for k, v in scores.items() if v == top]
            wrong = [t for t in targets if t in scores and scores[t] != top]
            if wrong:
                raise ValueError(f"{where}: target(s) {wrong} are options scored below the best option "
                                 f"{best}: inconsistent example")
            out += best
    seen, unique = set(), []
    for g in out:
        if not g.strip():
            raise ValueError(f"{where}: an empty answer would let an empty generation pass")
        if "\n" in g.strip():
            # generation stops at a newline and the checker keeps a first line:
            # "a\nb" would be checked as "a", a false pass for a sample "a"
            raise ValueError(f"{where}: answer {g!r} spans several lines; these tasks check one line")
        if g not in seen:
            seen.add(g)
            unique.append(g)
    if not unique:
        raise ValueError(f"{where}: no answer (no target and no option with a positive score)")
    return tuple(unique)


# ---------------------------------------------------------------- local task.json

def read_task_json(path: str | os.PathLike) -> list[Example]:
    """The examples of one BIG-bench JSON task file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such BIG-bench task file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise ValueError(f"{path}: no 'examples' list (is this a task with subtasks? give the subtask's file)")
    out = []
    for i, ex in enumerate(examples):
        where = f"{path}: example {i}"
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise ValueError(f"{where}: no string 'input'")
        if "target" not in ex and "target_scores" not in ex:
            raise ValueError(f"{where}: neither 'target' nor 'target_scores'")
        targets = _strings(ex["target"], "'target'", where) if "target" in ex else []
        scores = ex.get("target_scores")
        if scores is not None and not isinstance(scores, dict):
            raise ValueError(f"{where}: 'target_scores' must be an object")
        if not ex["input"].strip():
            raise ValueError(f"{where}: empty 'input'")
        # Surrounding whitespace is formatting ("10 - 15 = "), not content: the
        # prompt puts its own delimiter before the answer.
        out.append(Example(ex["input"].strip(), golds(targets, scores, where), tuple(scores or ()), i))
    return out


def read_local(root: str | os.PathLike, task: str) -> list[Example]:
    rel, _ = _check_task(task)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BIG-bench source {root} is not a directory (expected BIG-bench's "
                                f"benchmark_tasks layout, e.g. {root}/{rel}/task.json)")
    return read_task_json(root / rel / "task.json")


# ---------------------------------------------------------------- hub

def _hub_load(repo: str, config: str):
    import datasets

    try:
        return datasets.load_dataset(repo, config, split=HUB_SPLIT)
    except Exception as exc:  # noqa: BLE001 - offline, firewalled, renamed: all need the same advice
        raise RuntimeError(
            f"BIG-bench: could not load the hub dataset {repo} (config {config}, split {HUB_SPLIT}): "
            f"{type(exc).__name__}: {str(exc)[:300]}. Without the hub, point the tasks at BIG-bench's own "
            f"task files: --metadata '{{\"bigbench_source\": \"/path/to/bigbench/benchmark_tasks\"}}' "
            f"or {ENV_VAR}=/path/to/bigbench/benchmark_tasks") from exc


_CHOICE_LINE = re.compile(r"^\s*choice:\s?(.*)$")


def raw_input(inputs: str, fmt: Format, choices: Sequence[str], where: str) -> str:
    """The BIG-bench ``input`` inside a hub row's formatted zero-shot prompt:
    the input prefix, the appended ``choice:`` lines and the output prefix go."""
    text = inputs.strip()
    pre, post = fmt.input_prefix.strip(), fmt.output_prefix.strip()
    if pre and text.startswith(pre):
        text = text[len(pre):].lstrip(" ")
    if post and text.endswith(post):
        text = text[:-len(post)].rstrip()
    lines = text.split("\n")
    kept = [ln for ln in lines if not ((m := _CHOICE_LINE.match(ln)) and m.group(1).strip() in choices)]
    text = "\n".join(kept).strip()
    if any(_CHOICE_LINE.match(ln) for ln in kept):
        raise ValueError(f"{where}: 'choice:' lines that are not among the row's multiple_choice_targets: "
                         "the options would leak into the prompt")
    if not text:
        raise ValueError(f"{where}: empty input after removing the prompt formatting from {inputs!r}")
    return text


def hub_row_example(row: Mapping, index: int, fmt: Format, where: str) -> Example:
    missing = [k for k in ("inputs", "targets") if k not in row]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected the BIG-bench hub schema "
                         "(inputs, targets, multiple_choice_targets, multiple_choice_scores)")
    if not isinstance(row["inputs"], str):
        raise ValueError(f"{where}: 'inputs' must be a string")
    targets = _strings(row["targets"], "'targets'", where) if row["targets"] else []
    mc = list(row.get("multiple_choice_targets") or [])
    sc = list(row.get("multiple_choice_scores") or [])
    if len(mc) != len(sc):
        raise ValueError(f"{where}: {len(mc)} multiple_choice_targets but {len(sc)} multiple_choice_scores")
    scores = dict(zip(_strings(mc, "'multiple_choice_targets'", where), sc)) if mc else None
    return Example(raw_input(row["inputs"], fmt, mc, where), golds(targets, scores, where), tuple(mc), index)


def _rows(dataset) -> list[dict]:
    return [dict(r) for r in dataset]


def read_hub(task: str, repo: str = HUB_REPO, load: Callable | None = None) -> list[Example]:
    """The examples of ``task`` from the hub. ``load(repo, config)`` returns
    the ``default`` split (anything iterable over dict rows); tests pass a fake."""
    rel, fmt = _check_task(task)
    load = load or _hub_load
    if task.startswith(ICL + "/"):
        return split_icl_rows(_rows(load(repo, f"{ICL}_zero_shot")), f"{repo}/{ICL}_zero_shot")[
            task.split("/", 1)[1]]
    config = f"{rel}_zero_shot"
    rows = _rows(load(repo, config))
    if not rows:
        raise ValueError(f"{repo}/{config}: no rows")
    return [hub_row_example(r, i, fmt, f"{repo}/{config} row {i}") for i, r in enumerate(rows)]


_DATE = r"\d{4}-\d{2}-\d{2}"
_BANG_DATE = r"!\d{2}!\d{2}!\d{4}!"
_NUM3 = r"\d{5}-\d{5}-\d{5}"
_BANG_NUM3 = r"!\d{5}!\d{5}!\d{5}!"
_FORMAT_RULES = {
    "dates": (_DATE, _BANG_DATE),
    "dates_unnatural_content": (_NUM3, _BANG_NUM3),
    "dates_unnatural_content_and_form": (_BANG_NUM3, _NUM3),
    "dates_unnatural_form": (_BANG_DATE, _DATE),
    "unnatural_addition_2_digit": (r"\d+ - \d+ =", r"\d+"),
}


def icl_kind(inp: str, target: str) -> str | None:
    """Which Unnatural ICL subtask an (input, target) pair can belong to
    (``reverse`` for either reverse subtask), or None."""
    for name, (i_re, t_re) in _FORMAT_RULES.items():
        if re.fullmatch(i_re, inp) and re.fullmatch(t_re, target):
            return name
    tokens = inp.split(", ")
    if target == inp and len(set(tokens)) == len(tokens) > 1:
        return "identity"  # permutations of distinct letters; a palindrome repeats a letter
    if target == ", ".join(reversed(tokens)):
        return "reverse"
    return None


def split_icl_rows(rows: list[dict], where: str) -> dict[str, list[Example]]:
    """The hub's concatenated Unnatural ICL config, split into its 8 subtasks."""
    kinds, examples = [], []
    for i, row in enumerate(rows):
        w = f"{where} row {i}"
        text = str(row.get("inputs", "")).strip()
        fmt = ICL_FORMAT if text.startswith(ICL_FORMAT.input_prefix.strip()) else ADDITION
        ex = hub_row_example(row, i, fmt, w)
        if len(ex.targets) != 1:
            raise ValueError(f"{w}: expected one target, got {list(ex.targets)}")
        kind = icl_kind(ex.input, ex.targets[0])
        if kind is None:
            raise ValueError(f"{w}: ({ex.input!r} -> {ex.targets[0]!r}) matches no Unnatural ICL subtask")
        kinds.append(kind)
        examples.append(ex)
    runs: list[tuple[str, list[Example]]] = []
    for kind, ex in zip(kinds, examples):
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(ex)
        else:
            runs.append((kind, [ex]))
    expected = [s for s in ICL_SUBTASKS if not s.startswith("reverse_")]
    expected.insert(expected.index("identity") + 1, "reverse")
    seen = [k for k, _ in runs]
    if seen != expected:
        raise ValueError(f"{where}: subtasks appear as {seen}, not as one block each in BIG-bench's order "
                         f"{expected}; the two reverse subtasks cannot be told apart then. Use a local copy: "
                         f"--metadata '{{\"bigbench_source\": \"/path/to/benchmark_tasks\"}}'")
    out = {}
    for kind, block in runs:
        if kind != "reverse":
            out[kind] = block
            continue
        half = len(block) // 2
        first, second = block[:half], block[half:]
        if len(block) % 2 or {e.input for e in first} != {e.targets[0] for e in second}:
            raise ValueError(f"{where}: the {len(block)} reverse rows do not split into two mirror-image "
                             "halves (reverse_natural_content, then reverse_to_natural_content)")
        out["reverse_natural_content"] = first
        out["reverse_to_natural_content"] = second
    # positions within the subtask, as in its task.json
    return {k: [Example(e.input, e.targets, e.choices, j) for j, e in enumerate(v)] for k, v in out.items()}


# ---------------------------------------------------------------- prompts

def query(ex: Example, fmt: Format) -> str:
    """The example's question, ending where the answer starts (never in a space:
    the model writes the space, as BPE tokenizers expect)."""
    return f"{fmt.input_prefix}{ex.input.rstrip()}{fmt.output_prefix}".rstrip(" ")


def demonstration(ex: Example, fmt: Format) -> str:
    return f"{query(ex, fmt)} {ex.targets[0]}"


def pick_demos(examples: Sequence[Example], i: int, shots: int, rng: random.Random) -> list[int]:
    """``shots`` other examples, none with the same input or a shared answer
    (a demonstration that shows the answer would let copying pass)."""
    me = examples[i]
    mine = set(me.targets)

    def ok(j):
        other = examples[j]
        return j != i and other.input != me.input and not (mine & set(other.targets))

    picked: list[int] = []
    tries = 0
    while len(picked) < shots and tries < 50 * (shots + 1):
        j = rng.randrange(len(examples))
        tries += 1
        if j not in picked and ok(j):
            picked.append(j)
    if len(picked) < shots:  # a small or repetitive pool: draw from the exact list of candidates
        pool = [j for j in range(len(examples)) if ok(j) and j not in picked]
        if len(pool) < shots - len(picked):
            raise ValueError(f"only {len(pool) + len(picked)} examples can serve as demonstrations for "
                             f"example {me.index}; lower bigbench_shots (asked for {shots})")
        picked += rng.sample(pool, shots - len(picked))
    return picked


def build_docs(task: str, examples: Sequence[Example], shots: int = DEFAULT_SHOTS,
               seed: int = DEFAULT_SEED) -> list[dict]:
    """One document per example, in a fixed pseudo-random order (so that
    ``--limit N`` evaluates a random sample, not the first N of a sorted file).
    Each prompt has its own ``shots`` demonstrations, drawn from the example's
    own seed: a document's prompt is the same whatever subset or order lm-eval
    evaluates (lm-eval's few-shot sampler would redraw them per subset)."""
    _, fmt = _check_task(task)
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise ValueError(f"bigbench_shots must be an integer >= 0, got {shots!r}")
    if not examples:
        raise ValueError(f"{task}: no examples")
    order = list(range(len(examples)))
    random.Random(f"{seed}:{task}:order").shuffle(order)
    docs = []
    for i in order:
        ex = examples[i]
        demos = pick_demos(examples, i, shots, random.Random(f"{seed}:{task}:{ex.index}")) if shots else []
        prompt = fmt.separator.join([demonstration(examples[j], fmt) for j in demos] + [query(ex, fmt)])
        docs.append({"prompt": prompt, "target": list(ex.targets), "answer": ex.targets[0], "input": ex.input,
                     "choices": list(ex.choices), "bigbench_task": task, "bigbench_index": ex.index,
                     "demonstrations": [examples[j].index for j in demos]})
    return docs


# ---------------------------------------------------------------- lm-eval hook

@functools.lru_cache(maxsize=32)
def _load_cached(task: str, source: str) -> tuple[tuple[Example, ...], str]:
    if source == "hub" or source.startswith("hub:"):
        repo = source.split(":", 1)[1] if source.startswith("hub:") else HUB_REPO
        return tuple(read_hub(task, repo)), f"hub:{repo}"
    return tuple(read_local(source, task)), f"local:{Path(source).resolve()}"


def load_examples(task: str, source: str = "hub") -> tuple[list[Example], str]:
    """(examples, description of where they came from)."""
    _check_task(task)
    if not isinstance(source, str) or not source:
        raise ValueError(f"bigbench_source must be 'hub', 'hub:OWNER/NAME' or a directory, got {source!r}")
    examples, origin = _load_cached(task, source)
    return list(examples), origin


def custom_dataset(bigbench_task: str | None = None, bigbench_source: str | None = None,
                   bigbench_shots: int | None = None, bigbench_seed: int | None = None, **_metadata):
    """lm-eval ``custom_dataset`` hook: a DatasetDict with a ``test`` split.
    ``bigbench_task`` comes from the task YAML's dataset_kwargs; the rest from
    ``--metadata`` (``bigbench_source``, ``bigbench_shots``, ``bigbench_seed``)."""
    import datasets

    if not bigbench_task:
        raise ValueError("the task YAML must set dataset_kwargs.bigbench_task")
    source = bigbench_source or os.environ.get(ENV_VAR) or "hub"
    examples, origin = load_examples(bigbench_task, str(source))
    docs = build_docs(bigbench_task, examples,
                      DEFAULT_SHOTS if bigbench_shots is None else bigbench_shots,
                      DEFAULT_SEED if bigbench_seed is None else int(bigbench_seed))
    log.info("BIG-bench %s: %d examples from %s", bigbench_task, len(docs), origin)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})

