"""Real public model ladders in one tidy format, for backtesting the forecaster.

Reads the published data under ``../shared/data`` (relative to the repository
root; see its README.md) and returns a list of :class:`Ladder` objects, each a
table with one row per (model, task):

=========  ================================================================
model      unique model id within the ladder
N          total parameters
tokens     training tokens, where known (NaN otherwise)
compute    ``6 * N * tokens`` where tokens are known
task       task name as the source spells it
score      accuracy in [0, 1]
n_items    number of items the accuracy averages (see each source below)
chance     chance accuracy of the task (0 for generation tasks, 1/choices for
           multiple choice; NaN where unknown, which the forecaster reads as 0)
run        training run id (checkpoints of one run share it)
step       training step, where the source has one
dataset    pre-training data set
=========  ================================================================

The lab's own PassUntil counts (``instance, n, c`` instead of
``score, n_items``) can be added with ``lab_table=``.

Ladders (see :func:`ladders`):

- ``pythia_deduped_0shot``: Pythia deduped suite, 8 sizes 70M-12B at the
  final step 143000, lm-eval v0.3 zero-shot ``acc``; x = N.
- ``pythia_deduped_0shot_ckpts``: the same suite with every (size, step) of
  the zero-shot evals as its own model (step 0 dropped); x = compute.
- ``pythia_deduped_5shot``: the five-shot evals of the same 8 tasks at step
  143000; x = N.
- ``gadre_<dataset>_compute``: Gadre et al. (2024), every model trained on one
  data set (4 widths/depths x 0.25-32x token multipliers plus open_lm 1B/7B);
  x = compute.
- ``gadre_<dataset>_<m>x_N``: one data set and one token multiplier (default
  only 1x, the Chinchilla-optimal line with 6 sizes 11M-6.9B); x = N.
- ``mamba2_0shot``: Mamba-2 130M/780M/1.3B/2.7B, lm-eval v0.4; x = N.
- ``lab``: the lab's counts table, when given.

CLI: ``python bench/real_ladders.py --out DIR`` writes ``DIR/<ladder>.csv``
and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "Ladder",
    "ladders",
    "pythia_table",
    "pythia_final_ladder",
    "pythia_checkpoint_ladder",
    "pythia_fewshot_ladder",
    "gadre_ladders",
    "mamba2_ladder",
    "lab_ladder",
    "validate",
    "summary",
    "main",
    "SCORE_COLUMNS",
    "COUNT_COLUMNS",
    "PYTHIA_TASKS",
    "PYTHIA_CHANCE",
    "GADRE_CHANCE",
    "GADRE_N_ITEMS",
    "GADRE_MACRO_AVERAGED",
    "MAMBA2_CHANCE",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path("../shared/data")

SCORE_COLUMNS = ["model", "N", "tokens", "compute", "task", "score", "n_items", "chance"]
COUNT_COLUMNS = ["model", "N", "seed", "task", "instance", "n", "c"]
OPTIONAL_COLUMNS = ["run", "step", "seed", "dataset"]


@dataclass
class Ladder:
    """One model ladder: a tidy table and the scale column to forecast along."""

    name: str
    table: pd.DataFrame
    x: str  # "N" or "compute"
    description: str

    @property
    def kind(self) -> str:
        """``"counts"`` for PassUntil counts (instance, n, c), else ``"scores"``."""
        return "counts" if {"instance", "n", "c"} <= set(self.table.columns) else "scores"

    @property
    def models(self) -> list[str]:
        return list(pd.unique(self.table["model"]))

    @property
    def tasks(self) -> list[str]:
        return list(pd.unique(self.table["task"]))


# ---------------------------------------------------------------- chance floors
# Chance accuracy = 1 / (number of answer options) for multiple choice scored by
# comparing option log-likelihoods, 0 for generation / exact-match tasks. This
# is the uniform-guess floor; a weak model that always picks one class can sit
# above or below it (see the notes in each ladder's description).

PYTHIA_TASKS = ("lambada_openai", "arc_easy", "arc_challenge", "piqa", "sciq", "winogrande", "logiqa", "wsc")

PYTHIA_CHANCE = {
    # LAMBADA (OpenAI): predict the last word, exact match -> no guessing floor.
    "lambada_openai": 0.0,
    # ARC Easy / Challenge: 4 answer options for (almost) every question
    # (a handful have 3 or 5); 1/4.
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    # PIQA: 2 candidate solutions per goal.
    "piqa": 0.5,
    # SciQ: correct answer + 3 distractors.
    "sciq": 0.25,
    # WinoGrande: 2 candidate fillers for the blank.
    "winogrande": 0.5,
    # LogiQA: 4 options per question.
    "logiqa": 0.25,
    # WSC (SuperGLUE WSC, v0.3 harness): binary "does the pronoun refer to
    # this noun phrase?". Only 36.5% of the 104 validation labels are True,
    # so a model that always answers one way scores .365 or .635.
    "wsc": 0.5,
}

# Items per benchmark split as evaluated by lm-eval, used where the stderr
# cannot give n (p = 0 or 1, stderr 0). Every one of these is also what the
# stderr formula returns on the rows where it applies.
KNOWN_SIZES = {
    "lambada_openai": 5153,  # LAMBADA OpenAI test
    "arc_easy": 2376,  # ARC-Easy test
    "arc_challenge": 1172,  # ARC-Challenge test
    "piqa": 1838,  # PIQA validation
    "sciq": 1000,  # SciQ test
    "winogrande": 1267,  # WinoGrande (xl) validation
    "logiqa": 651,  # LogiQA test
    "wsc": 104,  # SuperGLUE WSC validation
    "hellaswag": 10042,  # HellaSwag validation
    "boolq": 3270,  # BoolQ validation
    "copa": 100,  # COPA validation
    "openbookqa": 500,  # OpenBookQA test
}

# Gadre et al. 2024 evaluate with the LLM Foundry / Mosaic "eval gauntlet" ICL
# tasks (files in mosaicml/llm-foundry scripts/eval/local_data, metadata in
# mlfoundations/scaling exp_data/eval_metadata.csv). Several were reformatted
# by LLM Foundry, so the number of options is the gauntlet's, not the original
# benchmark's.
GADRE_CHANCE = {
    # --- generation / exact match: no guessing floor
    "jeopardy": 0.0,
    "bigbench_qa_wikidata": 0.0,
    "lambada_openai": 0.0,
    "bigbench_conlang_translation": 0.0,
    "bigbench_dyck_languages": 0.0,
    "bigbench_cs_algorithms": 0.0,  # free-form answer (half the items are "True/False"-like balance checks)
    "bigbench_operators": 0.0,
    "bigbench_repeat_copy_logic": 0.0,
    "simple_arithmetic_nospaces": 0.0,
    "simple_arithmetic_withspaces": 0.0,
    "pubmed_qa_labeled": 0.0,  # generated yes/no/maybe; always "yes" would score ~.55
    "squad": 0.0,
    "coqa": 0.0,
    # --- two options
    "bigbench_misconceptions": 0.5,  # true/false
    "copa": 0.5,  # 2 alternatives
    "siqa": 0.5,  # LLM Foundry's siqa has 2 choices (A/B), not Social IQa's 3
    "piqa": 0.5,
    "bigbench_strange_stories": 0.5,  # 2-choice in the gauntlet (scores of 10M models sit at ~.5)
    "bigbench_strategy_qa": 0.5,  # yes/no
    "winograd": 0.5,  # WSC273, 2 candidate referents
    "winogrande": 0.5,
    "boolq": 0.5,  # yes/no; the majority class (yes) is 62.2%, always "no" scores .378
    "winogender_mc_female": 0.5,
    "winogender_mc_male": 0.5,
    "enterprise_pii_classification": 0.5,  # binary: contains PII or not
    "bbq": 0.5,  # gauntlet reformatted BBQ's 3 choices into 2
    # --- four options
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    "mmlu": 0.25,
    "mmlu_zeroshot": 0.25,
    "hellaswag": 0.25,
    "hellaswag_zeroshot": 0.25,
    "openbook_qa": 0.25,
    "commonsense_qa": 0.25,  # gauntlet file has 4 lettered options (CSQA has 5); tiny models sit at .196
    "bigbench_language_identification": 0.25,  # gauntlet reformatted to 4 options; all models .24-.26
    "bigbench_conceptual_combinations": 0.25,
    "bigbench_elementary_math_qa": 0.25,
    "math_qa": 0.25,  # gauntlet file has 4 lettered options (MathQA has 5)
    "logi_qa": 0.25,
    "agi_eval_lsat_ar": 0.25,  # gauntlet dropped one of the LSAT's 5 options
    "agi_eval_lsat_lr": 0.25,
    "agi_eval_lsat_rc": 0.25,
    "agi_eval_sat_en": 0.25,
    # --- five options (or a mix)
    "bigbench_novel_concepts": 0.2,  # 5 candidate concepts per item in the gauntlet file (metadata says 4)
    "bigbench_understanding_fables": 0.2,  # 5 candidate morals (A-E) per fable (metadata says 4)
    # BIG-bench logical_deduction: 300 three-object, 500 five-object and 700
    # seven-object puzzles with as many options as objects:
    # (300/3 + 500/5 + 700/7) / 1500 = 0.2 (the gauntlet metadata says 0.25).
    "bigbench_logical_deduction": 0.2,
}

# Items per gauntlet task (mlfoundations/scaling eval_metadata.csv "#datapoints"),
# checked against the data: for every task except the macro-averaged ones
# below, score * n is an integer for all 104 models. The metadata says 2376
# for arc_challenge (copied from arc_easy); the scores are multiples of 1/1172,
# the ARC-Challenge test size.
GADRE_N_ITEMS = {
    "agi_eval_lsat_ar": 230,
    "agi_eval_lsat_lr": 510,
    "agi_eval_lsat_rc": 268,
    "agi_eval_sat_en": 206,
    "arc_challenge": 1172,
    "arc_easy": 2376,
    "bbq": 58492,
    "bigbench_conceptual_combinations": 103,
    "bigbench_conlang_translation": 164,
    "bigbench_cs_algorithms": 1320,
    "bigbench_dyck_languages": 1000,
    "bigbench_elementary_math_qa": 38160,
    "bigbench_language_identification": 10000,
    "bigbench_logical_deduction": 1500,
    "bigbench_misconceptions": 219,
    "bigbench_novel_concepts": 32,
    "bigbench_operators": 210,
    "bigbench_qa_wikidata": 20321,
    "bigbench_repeat_copy_logic": 32,
    "bigbench_strange_stories": 174,
    "bigbench_strategy_qa": 2289,
    "bigbench_understanding_fables": 189,
    "boolq": 3270,
    "commonsense_qa": 1221,
    "copa": 100,
    "coqa": 7983,
    "enterprise_pii_classification": 3395,
    "hellaswag": 10042,
    "hellaswag_zeroshot": 10042,
    "jeopardy": 2117,
    "lambada_openai": 5153,
    "logi_qa": 651,
    "math_qa": 2983,
    "mmlu": 14042,
    "mmlu_zeroshot": 14042,
    "openbook_qa": 500,
    "piqa": 1838,
    "pubmed_qa_labeled": 1000,
    "simple_arithmetic_nospaces": 1000,
    "simple_arithmetic_withspaces": 1000,
    "siqa": 1954,
    "squad": 10570,
    "winogender_mc_female": 60,
    "winogender_mc_male": 60,
    "winograd": 273,
    "winogrande": 1267,
}
# Scores that are means over sub-categories (MMLU's 57 subjects, Jeopardy's 5
# categories, BBQ's 11 groups), not over items: n_items is the total item
# count, so a binomial variance on it is only approximate.
GADRE_MACRO_AVERAGED = frozenset({"mmlu", "mmlu_zeroshot", "jeopardy", "bbq"})

MAMBA2_CHANCE = {
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    "hellaswag": 0.25,  # 4 endings
    "lambada_openai": 0.0,
    "mmlu": 0.25,  # 4 options; every mmlu_<subject> also gets 0.25 (see _mamba2_chance)
    "piqa": 0.5,
    "sciq": 0.25,
    "winogrande": 0.5,
    # GLUE, zero-shot log-likelihood classification over the label words:
    "mnli": 1 / 3,  # entailment / neutral / contradiction
    "mnli_mismatch": 1 / 3,
    "mrpc": 0.5,  # paraphrase or not (68% of validation pairs are paraphrases)
    "qnli": 0.5,
    "qqp": 0.5,  # duplicate or not (63% of validation pairs are not)
    "rte": 0.5,
    "sst2": 0.5,
    "wnli": 0.5,
}

# Mamba-2 checkpoints (state-spaces/mamba2-*) were trained on 300B tokens of
# the Pile, per their model cards and the Mamba-2 paper; the result files do
# not say so themselves.
MAMBA2_TOKENS = 300e9
MAMBA2_DATASET = "pile"


# ---------------------------------------------------------------- helpers


def _resolve_data_dir(data_dir) -> Path:
    """A relative path is taken from the working directory when it exists
    there, else from the repository root (``../shared/data`` is the default)."""
    p = Path(data_dir)
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def n_from_stderr(p, stderr) -> np.ndarray:
    """Items behind a mean accuracy from lm-eval's sample stderr,
    ``stderr^2 = p (1 - p) / (n - 1)``; NaN where it is not identified
    (p in {0, 1} or stderr 0)."""
    p = np.asarray(p, float)
    se = np.asarray(stderr, float)
    ok = (p > 0) & (p < 1) & (se > 0) & np.isfinite(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(ok, np.round(p * (1 - p) / se**2 + 1), np.nan)
    return n


def _fill_n_items(df: pd.DataFrame, col: str = "n_items") -> pd.DataFrame:
    """Rows where the stderr gave no n take the task's most common n (the
    split size), else the known benchmark size."""
    df = df.copy()
    for task, idx in df.groupby("task").groups.items():
        vals = df.loc[idx, col].dropna()
        fill = vals.mode().iloc[0] if len(vals) else KNOWN_SIZES.get(task, np.nan)
        df.loc[idx, col] = df.loc[idx, col].fillna(fill)
    return df


def _order(df: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    cols = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    return df[cols].reset_index(drop=True)


def _sort(df: pd.DataFrame, x: str) -> pd.DataFrame:
    keys = [k for k in (x, "N", "step", "model", "task") if k in df.columns]
    keys = list(dict.fromkeys(keys))
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- Pythia

PYTHIA_FILE = "pythia_evals/pythia_v1_evals_tidy.csv.gz"


def _read_pythia(data_dir) -> pd.DataFrame:
    df = pd.read_csv(_resolve_data_dir(data_dir) / PYTHIA_FILE)
    # The standard (non-deduped) suite has an empty variant.
    df["variant"] = df["variant"].fillna("standard").replace("", "standard")
    return df


def pythia_table(
    data_dir=DEFAULT_DATA_DIR,
    *,
    suite: str = "deduped",
    eval_kind: str = "zero-shot",
    metric: str = "acc",
    tasks=PYTHIA_TASKS,
    steps=None,
    checkpoint_ids: bool = False,
    _raw: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Pythia evals in the tidy format.

    ``suite``: ``"deduped"`` (8 sizes 70M-12B) or ``"standard"`` (7 sizes; the
    1B standard model is only evaluated as ``pythia-1b-bf16``, which is left
    out). ``steps``: the training steps to keep (all when None).
    ``checkpoint_ids``: model ids ``f"{name}@{step}"`` instead of the name.
    """
    df = _read_pythia(data_dir) if _raw is None else _raw
    sel = (df["variant"] == suite) & (df["eval_kind"] == eval_kind) & (df["metric"] == metric)
    sel &= df["task"].isin(list(tasks))
    if steps is not None:
        sel &= df["step"].isin(list(steps))
    d = df[sel]
    if d.empty:
        raise ValueError(f"no Pythia rows for suite={suite!r} eval_kind={eval_kind!r} metric={metric!r}")
    dup = d.duplicated(["model", "step", "task"])
    if dup.any():
        raise ValueError(f"duplicated Pythia rows: {d[dup][['model', 'step', 'task']].head().to_dict('records')}")
    N = d["params_total"].astype(float)
    tokens = d["tokens_seen"].astype(float)
    out = pd.DataFrame(
        {
            "model": (d["model"] + "@" + d["step"].astype(str)) if checkpoint_ids else d["model"],
            "N": N,
            "tokens": tokens,
            "compute": 6.0 * N * tokens,
            "task": d["task"],
            "score": d["value"].astype(float),
            "n_items": n_from_stderr(d["value"], d["stderr"]),
            "chance": d["task"].map(PYTHIA_CHANCE).astype(float),
            "run": d["model"],
            "step": d["step"].astype(int),
            "dataset": "pile-deduped" if suite == "deduped" else "pile",
        }
    )
    out = _fill_n_items(out)
    return _order(out, SCORE_COLUMNS)


_PYTHIA_NOTES = (
    "Chance: lambada 0 (exact match), arc/sciq/logiqa 0.25 (4 options), piqa/winogrande/wsc 0.5. "
    "n_items from the lm-eval sample stderr, n = round(p(1-p)/se^2 + 1), which gives the split "
    "sizes (lambada 5153, arc_easy 2376, arc_challenge 1172, piqa 1838, sciq 1000, winogrande "
    "1267, logiqa 651, wsc 104); rows with p = 0 and stderr 0 (lambada at steps <= 512) take "
    "the split size."
)
_PYTHIA_0SHOT_NOTES = (
    " At or below chance (deduped, zero-shot): logiqa stays below .25 for every size and step; "
    "arc_challenge is < .25 up to 1B at step 143000 (and sciq falls to .18 at early steps); wsc "
    "never clears chance meaningfully: it is .365 or .635 (38/104 or 66/104, a model that gives "
    "one answer to every item) at 131 of the 208 checkpoints and .39-.47 for the larger final models."
)


def pythia_final_ladder(data_dir=DEFAULT_DATA_DIR, *, suite: str = "deduped", _raw=None) -> Ladder:
    t = pythia_table(data_dir, suite=suite, steps=[143000], _raw=_raw)
    return Ladder(
        name=f"pythia_{suite}_0shot",
        table=_sort(t, "N"),
        x="N",
        description=(
            f"Pythia {suite} suite at its final step 143000 (299.9B Pile tokens), lm-eval v0.3 "
            f"zero-shot acc, {t['model'].nunique()} sizes 70M-12B, tasks {', '.join(PYTHIA_TASKS)}. "
            + _PYTHIA_NOTES + (_PYTHIA_0SHOT_NOTES if suite == "deduped" else "")
        ),
    )


PYTHIA_MIN_STEP = 3000  # the first evaluated step after the 1430-step warmup


def pythia_checkpoint_ladder(data_dir=DEFAULT_DATA_DIR, *, suite: str = "deduped", _raw=None) -> Ladder:
    t = pythia_table(data_dir, suite=suite, checkpoint_ids=True, _raw=_raw)
    # Checkpoints inside the learning-rate warmup (Pythia: 1% of 143000 steps,
    # i.e. up to step 1430) are not models of a ladder: lambada is exactly 0
    # there while smaller models at the same compute already score, which no
    # monotone law in compute can follow.  Kept: steps >= PYTHIA_MIN_STEP.
    t = t[t["step"] >= PYTHIA_MIN_STEP]
    nsteps = t["step"].nunique()
    return Ladder(
        name=f"pythia_{suite}_0shot_ckpts",
        table=_sort(t, "compute"),
        x="compute",
        description=(
            f"Pythia {suite} suite, every (size, step) of the zero-shot evals as its own model "
            f"(model = name@step, run = name; {t['run'].nunique()} sizes x {nsteps} steps "
            f"{PYTHIA_MIN_STEP}-143000, the warmup's checkpoints dropped), tokens = tokens_seen (2,097,152 per step), compute = 6 N tokens. "
            "Checkpoints of one run are not independent training runs and before step 143000 they are "
            "mid-schedule (learning rate not annealed). "
            + _PYTHIA_NOTES + (_PYTHIA_0SHOT_NOTES if suite == "deduped" else "")
        ),
    )


def pythia_fewshot_ladder(data_dir=DEFAULT_DATA_DIR, *, suite: str = "deduped", _raw=None) -> Ladder | None:
    """The five-shot evals of the same 8 tasks at step 143000 (None when absent)."""
    try:
        t = pythia_table(data_dir, suite=suite, eval_kind="five-shot", steps=[143000], _raw=_raw)
    except ValueError:
        return None
    if t["model"].nunique() < 3:
        return None
    return Ladder(
        name=f"pythia_{suite}_5shot",
        table=_sort(t, "N"),
        x="N",
        description=(
            f"Pythia {suite} suite at step 143000, lm-eval v0.3 five-shot acc, "
            f"{t['model'].nunique()} sizes 70M-12B, tasks {', '.join(sorted(t['task'].unique()))}. "
            "wsc is .365 for every size here. " + _PYTHIA_NOTES
        ),
    )


# ---------------------------------------------------------------- Gadre et al. 2024

GADRE_FILE = "gadre2024_scaling/gadre2024_wide.csv"
_GADRE_META = ("name", "train_dataset", "params", "params_no_embed", "tokens", "chinchilla_multiplier")


def gadre_table(data_dir=DEFAULT_DATA_DIR) -> tuple[pd.DataFrame, list[str]]:
    """All 104 models x downstream accuracies in the tidy format, and the list
    of accuracy columns found."""
    wide = pd.read_csv(_resolve_data_dir(data_dir) / GADRE_FILE)
    missing = [c for c in _GADRE_META if c not in wide.columns]
    if missing:
        raise ValueError(f"{GADRE_FILE}: missing columns {missing}")
    if wide["name"].duplicated().any():
        raise ValueError(f"{GADRE_FILE}: duplicated model names")
    acc_cols = [
        c
        for c in wide.columns
        if c not in _GADRE_META
        and not c.startswith("loss")
        and pd.api.types.is_numeric_dtype(wide[c])
        and wide[c].between(0, 1).all()
    ]
    long = wide.melt(
        id_vars=list(_GADRE_META), value_vars=acc_cols, var_name="task", value_name="score"
    )
    N = long["params"].astype(float)
    tokens = long["tokens"].astype(float)
    out = pd.DataFrame(
        {
            "model": long["name"],
            "N": N,
            "tokens": tokens,
            "compute": 6.0 * N * tokens,
            "task": long["task"],
            "score": long["score"].astype(float),
            "n_items": long["task"].map(GADRE_N_ITEMS).astype(float),
            "chance": long["task"].map(GADRE_CHANCE).astype(float),
            "run": long["name"],
            "dataset": long["train_dataset"],
            "token_multiplier": long["chinchilla_multiplier"].astype(float),
            "N_nonembed": long["params_no_embed"].astype(float),
        }
    )
    return _order(out, SCORE_COLUMNS), acc_cols


def _gadre_description(sub: pd.DataFrame, acc_cols: list[str], head: str) -> str:
    unknown_chance = sorted(t for t in acc_cols if t not in GADRE_CHANCE)
    unknown_n = sorted(t for t in acc_cols if t not in GADRE_N_ITEMS)
    s = (
        f"{head} {sub['model'].nunique()} models, N {sub['N'].min():.3g}-{sub['N'].max():.3g}, "
        f"{len(acc_cols)} downstream accuracies (LLM Foundry eval gauntlet, mixed 0/3/10-shot). "
        "Chance from the gauntlet's formatting (1/options; 0 for generation tasks; 0.2 for "
        "novel_concepts, understanding_fables (5 options) and logical_deduction (3/5/7 options)). "
        "n_items from mlfoundations/scaling eval_metadata.csv, verified by score*n being integral "
        "(arc_challenge corrected to 1172); mmlu, mmlu_zeroshot, jeopardy and bbq are means over "
        "sub-categories, so their n_items (total items) is approximate. "
        "Below-chance floors: commonsense_qa .19-.20 for small models; boolq .378 (always 'no'); "
        "many 4-option tasks sit at chance for every model."
    )
    if unknown_chance:
        s += f" Chance unknown (NaN): {', '.join(unknown_chance)}."
    if unknown_n:
        s += f" n_items unknown (NaN): {', '.join(unknown_n)}."
    return s


def gadre_ladders(data_dir=DEFAULT_DATA_DIR, *, n_multipliers=(1.0,), min_sizes: int = 4) -> list[Ladder]:
    """One x=compute ladder per training data set, and one x=N ladder per
    (data set, token multiplier in ``n_multipliers``) with at least
    ``min_sizes`` sizes (pass ``n_multipliers=None`` for every multiplier)."""
    t, acc_cols = gadre_table(data_dir)
    out = []
    for ds, sub in t.groupby("dataset", sort=True):
        out.append(
            Ladder(
                name=f"gadre_{ds}_compute",
                table=_sort(sub, "compute"),
                x="compute",
                description=_gadre_description(
                    sub, acc_cols,
                    f"Gadre et al. 2024, trained on {ds}, every width/depth and token multiplier "
                    f"({', '.join(f'{m:g}x' for m in sorted(sub['token_multiplier'].unique()))}); x = compute:",
                ),
            )
        )
    for (ds, m), sub in t.groupby(["dataset", "token_multiplier"], sort=True):
        if n_multipliers is not None and not any(np.isclose(m, q) for q in n_multipliers):
            continue
        if sub["N"].nunique() < min_sizes:
            continue
        out.append(
            Ladder(
                name=f"gadre_{ds}_{m:g}x_N",
                table=_sort(sub, "N"),
                x="N",
                description=_gadre_description(
                    sub, acc_cols,
                    f"Gadre et al. 2024, trained on {ds} at {m:g}x the Chinchilla token budget "
                    f"(tokens = {20 * m:g} N); x = N:",
                ),
            )
        )
    return out


# ---------------------------------------------------------------- Mamba-2

MAMBA2_GLOB = "lm_eval_v04/mamba2_results/*/results_*.json"


def _mamba2_chance(task: str) -> float:
    if task in MAMBA2_CHANCE:
        return MAMBA2_CHANCE[task]
    if task.startswith("mmlu_"):
        return 0.25
    return np.nan


def _leaves(task: str, group_subtasks: dict) -> list[str]:
    subs = group_subtasks.get(task) or []
    if not subs:
        return [task]
    return [leaf for s in subs for leaf in _leaves(s, group_subtasks)]


def mamba2_table(data_dir=DEFAULT_DATA_DIR) -> pd.DataFrame:
    """Mamba-2 v0.4 results: every leaf task with an ``acc,none`` metric and
    every top-level group (``mmlu``); intermediate groups (mmlu_humanities,
    ...) are left out as they repeat their subjects."""
    files = sorted(_resolve_data_dir(data_dir).glob(MAMBA2_GLOB))
    if not files:
        raise FileNotFoundError(f"no files match {MAMBA2_GLOB} under {data_dir}")
    rows = []
    seen = {}
    for f in files:
        r = json.loads(f.read_text())
        cfg = r.get("config", {})
        model = r.get("model_name") or str(cfg.get("model_args", "")).split("pretrained=")[-1].split(",")[0]
        if model in seen:
            raise ValueError(f"Mamba-2 model {model!r} in both {seen[model]} and {f}")
        seen[model] = f
        N = float(cfg["model_num_parameters"])
        gs = r.get("group_subtasks", {})
        nested = {s for subs in gs.values() for s in subs}
        nsamp = r.get("n-samples", {})
        for task, res in r["results"].items():
            if "acc,none" not in res:
                continue
            is_group = bool(gs.get(task))
            if is_group and task in nested:
                continue  # intermediate group
            p = float(res["acc,none"])
            if is_group:
                n = sum(nsamp.get(leaf, {}).get("effective", np.nan) for leaf in _leaves(task, gs))
            else:
                n = nsamp.get(task, {}).get("effective", np.nan)
            if not np.isfinite(n):
                n = float(n_from_stderr(p, res.get("acc_stderr,none", np.nan)))
            rows.append(
                dict(
                    model=model, N=N, tokens=MAMBA2_TOKENS, compute=6.0 * N * MAMBA2_TOKENS,
                    task=task, score=p, n_items=float(n), chance=_mamba2_chance(task),
                    run=model, dataset=MAMBA2_DATASET,
                )
            )
    return _order(pd.DataFrame(rows), SCORE_COLUMNS)


def mamba2_ladder(data_dir=DEFAULT_DATA_DIR) -> Ladder:
    t = mamba2_table(data_dir)
    unknown = sorted(t.loc[t["chance"].isna(), "task"].unique())
    desc = (
        f"Mamba-2 {t['model'].nunique()} sizes ({t['N'].min():.3g}-{t['N'].max():.3g} params, "
        "config.model_num_parameters), lm-eval v0.4 zero-shot acc,none, "
        f"{t['task'].nunique()} tasks: arc, hellaswag, lambada, piqa, sciq, winogrande, GLUE "
        "(mnli, mnli_mismatch, mrpc, qnli, qqp, rte, sst2, wnli; cola has only mcc and is left out), "
        "mmlu (size-weighted over 14042 items) and its 57 subjects. tokens = 300B Pile tokens "
        "(model cards; not in the files). n_items from the files' n-samples. Chance: 1/options "
        "(mnli 1/3, other GLUE 0.5, mmlu 0.25). GLUE and MMLU stay at chance or at a "
        "majority-class rate for every size (e.g. mrpc .69/.68/.35/.47)."
    )
    if unknown:
        desc += f" Chance unknown (NaN): {', '.join(unknown)}."
    return Ladder(name="mamba2_0shot", table=_sort(t, "N"), x="N", description=desc)


# ---------------------------------------------------------------- the lab


def lab_ladder(lab_table, *, name: str = "lab") -> Ladder:
    """The lab's PassUntil counts (columns model, N, seed, task, instance, n,
    c), passed through with light validation; ``run`` = model."""
    t = pd.read_csv(lab_table) if not isinstance(lab_table, pd.DataFrame) else lab_table.copy()
    missing = [c for c in COUNT_COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"lab table {lab_table}: missing columns {missing}")
    if t.empty:
        raise ValueError(f"lab table {lab_table}: no rows")
    for c in ("N", "n", "c"):
        if not pd.api.types.is_numeric_dtype(t[c]):
            raise ValueError(f"lab table: column {c!r} is not numeric")
    if not (t["N"] > 0).all():
        raise ValueError("lab table: N must be positive")
    if not ((t["n"] > 0) & (t["c"] >= 0) & (t["c"] <= t["n"])).all():
        raise ValueError("lab table: need n > 0 and 0 <= c <= n on every row")
    if not (np.isclose(t["n"], np.round(t["n"])) & np.isclose(t["c"], np.round(t["c"]))).all():
        raise ValueError("lab table: n and c must be whole numbers")
    if t.duplicated(["model", "seed", "task", "instance"]).any():
        raise ValueError("lab table: duplicated (model, seed, task, instance) rows")
    if "run" not in t.columns:
        t["run"] = t["model"]
    return Ladder(
        name=name,
        table=_sort(_order(t, COUNT_COLUMNS), "N"),
        x="N",
        description=(
            f"The lab's PassUntil counts from {lab_table if not isinstance(lab_table, pd.DataFrame) else 'a table'}: "
            f"{t['model'].nunique()} models, {t['task'].nunique()} tasks, "
            f"{t['seed'].nunique()} seeds, {t['instance'].nunique()} instances."
        ),
    )


# ---------------------------------------------------------------- all ladders


def ladders(data_dir=DEFAULT_DATA_DIR, lab_table=None, *, gadre_n_multipliers=(1.0,)) -> list[Ladder]:
    """Every real ladder available under ``data_dir`` (plus the lab's counts
    table when ``lab_table`` is given)."""
    raw = _read_pythia(data_dir)
    out = [
        pythia_final_ladder(data_dir, _raw=raw),
        pythia_checkpoint_ladder(data_dir, _raw=raw),
    ]
    few = pythia_fewshot_ladder(data_dir, _raw=raw)
    if few is not None:
        out.append(few)
    out.extend(gadre_ladders(data_dir, n_multipliers=gadre_n_multipliers))
    out.append(mamba2_ladder(data_dir))
    if lab_table is not None:
        out.append(lab_ladder(lab_table))
    for lad in out:
        validate(lad)
    return out


def validate(ladder: Ladder) -> None:
    """Raise ValueError unless the ladder's table is well formed."""
    t = ladder.table
    if ladder.x not in ("N", "compute"):
        raise ValueError(f"{ladder.name}: x must be 'N' or 'compute', got {ladder.x!r}")
    need = COUNT_COLUMNS if ladder.kind == "counts" else SCORE_COLUMNS
    missing = [c for c in need + [ladder.x] if c not in t.columns]
    if missing:
        raise ValueError(f"{ladder.name}: missing columns {missing}")
    if t.empty:
        raise ValueError(f"{ladder.name}: empty table")
    xs = t[ladder.x].astype(float)
    if not (np.isfinite(xs) & (xs > 0)).all():
        raise ValueError(f"{ladder.name}: {ladder.x} must be finite and positive")
    if ladder.kind == "scores":
        if t.duplicated(["model", "task"]).any():
            raise ValueError(f"{ladder.name}: duplicated (model, task) rows")
        if not t["score"].between(0, 1).all():
            raise ValueError(f"{ladder.name}: scores outside [0, 1]")
        n = t["n_items"].dropna()
        if not (n > 0).all():
            raise ValueError(f"{ladder.name}: n_items must be positive where given")
        ch = t["chance"].dropna()
        if not ((ch >= 0) & (ch < 1)).all():
            raise ValueError(f"{ladder.name}: chance must be in [0, 1)")
        # one scale value per model
        if (t.groupby("model")[ladder.x].nunique() > 1).any():
            raise ValueError(f"{ladder.name}: a model has more than one {ladder.x}")


def summary(lads: list[Ladder]) -> pd.DataFrame:
    rows = []
    for lad in lads:
        t = lad.table
        per_model = t.drop_duplicates("model")
        rows.append(
            dict(
                ladder=lad.name,
                x=lad.x,
                kind=lad.kind,
                models=t["model"].nunique(),
                tasks=t["task"].nunique(),
                rows=len(t),
                sizes=f"{per_model['N'].min():.3g}-{per_model['N'].max():.3g}",
                x_range=f"{per_model[lad.x].min():.3g}-{per_model[lad.x].max():.3g}",
            )
        )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for one CSV per ladder")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="the shared data folder (default ../shared/data from the repository root)")
    ap.add_argument("--lab-table", type=Path, default=None, help="the lab's counts CSV (model, N, seed, task, instance, n, c)")
    ap.add_argument("--gadre-multipliers", type=str, default="1",
                    help="token multipliers for the Gadre x=N ladders, comma separated, or 'all'")
    args = ap.parse_args(argv)
    mult = None if args.gadre_multipliers == "all" else tuple(float(s) for s in args.gadre_multipliers.split(","))
    lads = ladders(args.data_dir, args.lab_table, gadre_n_multipliers=mult)
    args.out.mkdir(parents=True, exist_ok=True)
    for lad in lads:
        lad.table.to_csv(args.out / f"{lad.name}.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary(lads).to_string(index=False))
    print(f"\nwrote {len(lads)} CSVs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
