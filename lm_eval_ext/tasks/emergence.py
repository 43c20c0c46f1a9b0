"""Data and prompt formats of the emergence-law tasks (Snell et al. 2024).

One module builds the prompts for both sides of the finetuning experiment, so
that a finetuned checkpoint is trained on exactly the text layout it is later
evaluated on:

- the lm-eval tasks in ``task_configs/emergence/`` (``emergence_gsm8k``,
  ``emergence_mmlu``, ``emergence_csqa``, ``emergence_cola``) take
  ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice`` / ``description``
  from :data:`FORMATS`;
- :func:`training_examples` turns training documents into (prompt, completion)
  pairs for :mod:`lm_eval_ext.finetune.train`: the prompt is what lm-eval puts
  before the answer in a zero-shot context (description + ``doc_to_text``),
  the completion is what follows it in a few-shot example (target delimiter +
  gold answer, plus the few-shot delimiter for generation tasks, so the model
  learns where an answer ends). A few-shot context is a sequence of such
  completed examples followed by the question: finetuning data, shots and
  query share one layout.

Data sources, per task, chosen without editing a YAML (first match wins):

1. ``--metadata '{"emergence_data": SOURCE}'`` on the lm_eval command line
   (or ``TaskManager(metadata=...)``),
2. the environment variable ``LM_EVAL_EXT_EMERGENCE_DATA=SOURCE``,
3. ``hub``.

SOURCE is ``hub`` (the Hugging Face datasets in :data:`FORMATS`) or a local
directory ``DIR`` holding ``DIR/<task>/<role>.jsonl`` (or ``.jsonl.gz``) for
the roles ``train`` (finetuning data; also the few-shot pool unless
``fewshot.jsonl`` exists), ``fewshot`` (optional) and ``eval``. ``<task>`` is
``gsm8k``, ``mmlu``, ``csqa`` or ``cola``. Each line is one document with the
task's columns (the hub's own column layout is accepted too):

=======  ==================================================================
task     columns
=======  ==================================================================
gsm8k    ``question`` (str), ``answer`` (str: worked solution ending in
         ``#### <number>``)
mmlu     ``question`` (str), ``choices`` (4 str), ``answer`` (0-3 or A-D),
         ``subject`` (str, optional)
csqa     ``question`` (str), ``choices`` (5 str, or the hub's
         ``{"label": [...], "text": [...]}``), ``answer`` (0-4 or A-E; the
         hub's ``answerKey`` is accepted)
cola     ``sentence`` (str), ``label`` (0 = unacceptable, 1 = acceptable)
=======  ==================================================================

The pretraining-loss task ``emergence_loss`` reads held-out text from
``--metadata '{"loss_data": SOURCE}'`` or ``LM_EVAL_EXT_LOSS_DATA``: ``hub``
(``EleutherAI/wikitext_document_level``, ``wikitext-2-raw-v1``, split test,
column ``page``: lm-eval's ``wikitext`` documents), ``hub:PATH[:CONFIG[:SPLIT
[:COLUMN]]]``, a ``.txt`` file (documents separated by blank lines) or a
``.jsonl[.gz]`` file with a ``text`` field. See :func:`loss_dataset` for how
tokens are counted.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..conventions.jsonl import iter_jsonl

log = logging.getLogger(__name__)

ENV_VAR = "LM_EVAL_EXT_EMERGENCE_DATA"
LOSS_ENV_VAR = "LM_EVAL_EXT_LOSS_DATA"
ROLES = ("train", "fewshot", "eval")
LETTERS = "ABCDEFGHIJ"


# ---------------------------------------------------------------- normalising rows

def _need_str(row: dict, key: str, where: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{where}: column {key!r} must be a non-empty string, got {v!r}")
    return v


def _answer_index(v: object, n: int, key: str, where: str) -> int:
    """0..n-1 from an int or a letter (A..)."""
    if isinstance(v, str) and len(v.strip()) == 1 and v.strip().upper() in LETTERS[:n]:
        return LETTERS.index(v.strip().upper())
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n:
        return v
    raise ValueError(f"{where}: column {key!r} must be an index 0-{n - 1} or a letter "
                     f"{LETTERS[0]}-{LETTERS[n - 1]}, got {v!r}")


def _choices(row: dict, n: int, where: str) -> list[str]:
    c = row.get("choices")
    if isinstance(c, dict) and "text" in c:  # the CommonsenseQA hub layout
        labels = c.get("label")
        if labels is not None and list(labels) != list(LETTERS[:len(labels)]):
            raise ValueError(f"{where}: choices.label must be {list(LETTERS[:n])}, got {labels!r}")
        c = c["text"]
    if not isinstance(c, (list, tuple)) or len(c) != n or not all(isinstance(x, str) for x in c):
        raise ValueError(f"{where}: column 'choices' must be a list of {n} strings, got {c!r}")
    return list(c)


def _norm_gsm8k(row: dict, where: str) -> dict:
    answer = _need_str(row, "answer", where)
    if "####" not in answer:
        raise ValueError(f"{where}: column 'answer' must end with '#### <final answer>' "
                         f"(GSM8K's format; the score compares what follows ####)")
    return {"question": _need_str(row, "question", where), "answer": answer}


def _norm_mmlu(row: dict, where: str) -> dict:
    if isinstance(row.get("train"), dict):  # cais/mmlu auxiliary_train nests each row
        row = row["train"]
    subject = row.get("subject") or ""
    if not isinstance(subject, str):
        raise ValueError(f"{where}: column 'subject' must be a string, got {subject!r}")
    return {"question": _need_str(row, "question", where), "subject": subject,
            "choices": _choices(row, 4, where), "answer": _answer_index(row.get("answer"), 4, "answer", where)}


def _norm_csqa(row: dict, where: str) -> dict:
    key = "answer" if "answer" in row else "answerKey"
    return {"question": _need_str(row, "question", where), "choices": _choices(row, 5, where),
            "answer": _answer_index(row.get(key), 5, key, where)}


def _norm_cola(row: dict, where: str) -> dict:
    label = row.get("label")
    if label not in (0, 1) or isinstance(label, bool):
        raise ValueError(f"{where}: column 'label' must be 0 (unacceptable) or 1 (acceptable), got {label!r} "
                         f"(the GLUE test split has no labels: evaluate on validation)")
    return {"sentence": _need_str(row, "sentence", where), "label": int(label)}


# ---------------------------------------------------------------- prompt formats

def _mc_lines(doc: dict) -> str:
    return "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(doc["choices"]))


def _gsm8k_text(doc: dict) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def _mmlu_text(doc: dict) -> str:
    return f"{doc['question'].strip()}{_mc_lines(doc)}\nAnswer:"


def _csqa_text(doc: dict) -> str:
    return f"Question: {doc['question'].strip()}{_mc_lines(doc)}\nAnswer:"


def _cola_text(doc: dict) -> str:
    return f"{doc['sentence']}\nQuestion: Does this sentence make sense?\nAnswer:"


def _solution(doc: dict) -> str:
    return doc["answer"]


def _answer(doc: dict) -> int:
    return doc["answer"]


def _label(doc: dict) -> int:
    return doc["label"]


def _abcd(doc: dict) -> list[str]:
    return list(LETTERS[:4])


def _abcde(doc: dict) -> list[str]:
    return list(LETTERS[:5])


def _no_yes(doc: dict) -> list[str]:
    return ["no", "yes"]


@dataclass(frozen=True)
class TaskFormat:
    """How one task's documents are read and turned into prompts.

    ``target(doc)``: for generation tasks the gold answer text, for
    multiple-choice tasks the index into ``choices(doc)``. ``description``: a
    Jinja template rendered per document (lm-eval renders the YAML's copy of
    the same string; a test checks they agree).
    """

    name: str
    hub_path: str
    hub_name: str | None
    hub_splits: dict[str, str]
    num_fewshot: int
    normalize: Callable[[dict, str], dict]
    text: Callable[[dict], str]
    target: Callable[[dict], object]
    choices: Callable[[dict], list[str]] | None = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    hub_configs: dict[str, str] = field(default_factory=dict)  # role -> config, where it differs

    @property
    def generative(self) -> bool:
        return self.choices is None

    def gold_text(self, doc: dict) -> str:
        """The answer as it appears after the target delimiter."""
        t = self.target(doc)
        return str(t) if self.generative else self.choices(doc)[t]

    def render_description(self, doc: dict) -> str:
        if not self.description:
            return ""
        from lm_eval.utils import apply_template

        return apply_template(self.description, doc)


MMLU_DESCRIPTION = ("The following are multiple choice questions (with answers)"
                    "{% if subject %} about {{ subject | replace('_', ' ') }}{% endif %}.\n\n")

FORMATS: dict[str, TaskFormat] = {
    "gsm8k": TaskFormat(
        name="gsm8k", hub_path="openai/gsm8k", hub_name="main",
        hub_splits={"train": "train", "fewshot": "train", "eval": "test"}, num_fewshot=8,
        normalize=_norm_gsm8k, text=_gsm8k_text, target=_solution),
    "mmlu": TaskFormat(
        name="mmlu", hub_path="cais/mmlu", hub_name="all",
        hub_splits={"train": "train", "fewshot": "dev", "eval": "test"}, num_fewshot=5,
        hub_configs={"train": "auxiliary_train"},
        normalize=_norm_mmlu, text=_mmlu_text, target=_answer,
        choices=_abcd, description=MMLU_DESCRIPTION),
    "csqa": TaskFormat(
        name="csqa", hub_path="tau/commonsense_qa", hub_name=None,
        hub_splits={"train": "train", "fewshot": "train", "eval": "validation"}, num_fewshot=6,
        normalize=_norm_csqa, text=_csqa_text, target=_answer,
        choices=_abcde),
    "cola": TaskFormat(
        name="cola", hub_path="nyu-mll/glue", hub_name="cola",
        hub_splits={"train": "train", "fewshot": "train", "eval": "validation"}, num_fewshot=5,
        normalize=_norm_cola, text=_cola_text, target=_label,
        choices=_no_yes),
}


def get_format(task: str) -> TaskFormat:
    key = task.removeprefix("emergence_")
    if key not in FORMATS:
        raise ValueError(f"unknown emergence task {task!r}; known: {', '.join(FORMATS)}")
    return FORMATS[key]


# ---------------------------------------------------------------- loading documents

def resolve_source(metadata: dict | None = None) -> str:
    """``hub`` or a local directory: metadata ``emergence_data``, else the env var, else hub."""
    src = (metadata or {}).get("emergence_data") or os.environ.get(ENV_VAR) or "hub"
    return str(src)


def _local_file(root: Path, task: str, role: str) -> Path | None:
    for suffix in (".jsonl", ".jsonl.gz"):
        p = root / task / f"{role}{suffix}"
        if p.is_file():
            return p
    return None


def _load_hub(path: str, name: str | None, split: str, advice: str):
    """``datasets.load_dataset`` with one clear error when the hub cannot be
    reached (offline, firewalled, renamed): what failed and what to do."""
    import datasets

    try:
        return datasets.load_dataset(path, name, split=split)
    except Exception as exc:  # noqa: BLE001 - every failure here needs the same advice
        raise RuntimeError(f"cannot load the hub dataset {path}" + (f" ({name})" if name else "")
                           + f", split {split}: {type(exc).__name__}: {exc}. Offline? {advice}") from exc


def load_split(task: str, role: str, source: str | None = None) -> list[dict]:
    """The documents of ``role`` (train, fewshot or eval), normalised to the task's columns."""
    fmt = get_format(task)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    source = source or resolve_source()
    if source == "hub":
        name = fmt.hub_configs.get(role, fmt.hub_name)
        split = fmt.hub_splits[role]
        ds = _load_hub(fmt.hub_path, name, split,
                       "use a local copy: --metadata '{\"emergence_data\": DIR}' (lm_eval), --data DIR "
                       "(lm-eval-ext finetune) or LM_EVAL_EXT_EMERGENCE_DATA=DIR")
        where = f"hub:{fmt.hub_path}" + (f"/{name}" if name else "") + f":{split}"
        return [fmt.normalize(dict(row), f"{where} row {i}") for i, row in enumerate(ds)]
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"emergence data: {source!r} is neither 'hub' nor a directory")
    path = _local_file(root, fmt.name, role)
    if path is None and role == "fewshot":
        path = _local_file(root, fmt.name, "train")
    if path is None:
        raise FileNotFoundError(f"emergence data: no {root / fmt.name / (role + '.jsonl')}"
                                + (" (nor fewshot.jsonl)" if role == "train" else ""))
    docs = []
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object")
        docs.append(fmt.normalize(row, f"{path}:{lineno}"))
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs


def custom_dataset(task: str, **metadata):
    """lm-eval ``custom_dataset``: a DatasetDict with ``fewshot`` and ``eval`` splits.

    lm-eval passes ``--metadata`` (and the ``--model_args``) as keyword arguments.
    """
    import datasets

    source = resolve_source(metadata)
    log.info("emergence_%s: data from %s", get_format(task).name, source)
    return datasets.DatasetDict({role: datasets.Dataset.from_list(load_split(task, role, source))
                                 for role in ("fewshot", "eval")})


# ---------------------------------------------------------------- finetuning data

@dataclass(frozen=True)
class Example:
    """One finetuning example: the loss is taken on ``completion`` only."""

    prompt: str
    completion: str


def training_example(task: str, doc: dict) -> Example:
    """The zero-shot prompt of ``doc`` and the text that follows it in a few-shot example."""
    fmt = get_format(task)
    end = fmt.fewshot_delimiter if fmt.generative else ""
    return Example(prompt=fmt.render_description(doc) + fmt.text(doc),
                   completion=fmt.target_delimiter + fmt.gold_text(doc) + end)


def select_docs(docs: Sequence[dict], D: int, seed: int | None = None) -> list[dict]:
    """The first ``D`` documents, or (``seed`` given) a seeded sample of ``D`` in random order."""
    if not isinstance(D, int) or isinstance(D, bool) or D < 1:
        raise ValueError(f"D (finetuning examples) must be a positive integer, got {D!r}")
    if D > len(docs):
        raise ValueError(f"D = {D} exceeds the {len(docs)} training documents available")
    if seed is None:
        return list(docs[:D])
    return random.Random(seed).sample(list(docs), D)


def training_examples(task: str, D: int, seed: int | None = None, source: str | None = None) -> list[Example]:
    """Finetuning examples from the task's training split (see :func:`select_docs`)."""
    return [training_example(task, d) for d in select_docs(load_split(task, "train", source), D, seed)]


# ---------------------------------------------------------------- pretraining loss

LOSS_HUB_DEFAULT = ("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "test", "page")
#: model_args / metadata keys that name the model's tokenizer, in order of preference.
TOKENIZER_KEYS = ("tokenizer", "pretrained", "model")


def load_loss_texts(source: str) -> list[str]:
    """Held-out documents for the pretraining loss (see the module docstring for SOURCE)."""
    if source == "hub" or source.startswith("hub:"):
        if source == "hub":
            path, name, split, column = LOSS_HUB_DEFAULT
        else:  # hub:PATH[:CONFIG[:SPLIT[:COLUMN]]]; unnamed parts: no config, split test, column text
            parts = source.split(":")[1:]
            if not parts[0] or len(parts) > 4:
                raise ValueError(f"loss data {source!r}: expected hub:PATH[:CONFIG[:SPLIT[:COLUMN]]]")
            path, name, split, column = (parts + [None, "test", "text"][len(parts) - 1:])[:4]
        ds = _load_hub(path, name or None, split,
                       "use a local .txt or .jsonl: --metadata '{\"loss_data\": FILE}' or LM_EVAL_EXT_LOSS_DATA=FILE")
        if column not in ds.column_names:
            raise ValueError(f"loss data hub:{path}: no column {column!r} (columns: {ds.column_names})")
        texts = [t for t in ds[column] if isinstance(t, str) and t.strip()]
    else:
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"loss data: {source!r} is neither 'hub[:...]' nor a file")
        if p.name.endswith((".jsonl", ".jsonl.gz")):
            texts = []
            for lineno, row in iter_jsonl(p):
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError(f"{p}:{lineno}: each line needs a string field 'text'")
                if row["text"].strip():
                    texts.append(row["text"])
        else:
            raw = p.read_text(encoding="utf-8")
            texts = [block.strip("\n") for block in raw.split("\n\n") if block.strip()]
    if not texts:
        raise ValueError(f"loss data {source}: no non-empty documents")
    return texts


def tokenizer_name(metadata: dict) -> str | None:
    for key in TOKENIZER_KEYS:
        v = metadata.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def count_tokens(texts: Sequence[str], tokenizer: str, add_bos_token: bool | None = None) -> list[int]:
    """Tokens lm-eval's ``hf`` backend scores for each text in loglikelihood_rolling.

    ``HFLM.loglikelihood_rolling`` scores every token of ``tokenizer.encode(text)``
    (with the tokenizer's default special tokens, or ``add_special_tokens =
    add_bos_token`` when that model arg is set): the rolling windows predict
    each of them, the first from the prefix (BOS/EOS) token.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    kwargs = {} if add_bos_token is None else {"add_special_tokens": bool(add_bos_token)}
    return [len(tok.encode(t, **kwargs)) for t in texts]


def _as_bool(v: object) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes")


def loss_dataset(**metadata):
    """lm-eval ``custom_dataset`` of ``emergence_loss``: ``text``, ``n_tokens``, ``n_bytes``.

    lm-eval 0.4.13 merges ``--model_args`` into the task metadata (the RULER
    tasks rely on this), so ``pretrained=...`` (or ``tokenizer=...``) names the
    tokenizer whose tokens the NLL is divided by. Without one (e.g. ``lm_eval
    validate``, or a Python caller that builds its own TaskManager), the counts
    are -1 and scoring stops with an error saying what to pass.
    """
    import datasets

    source = str(metadata.get("loss_data") or os.environ.get(LOSS_ENV_VAR) or "hub")
    texts = load_loss_texts(source)
    tok = tokenizer_name(metadata)
    if tok is None:
        log.warning("emergence_loss: no tokenizer in model_args/metadata (%s): tokens cannot be counted",
                    "/".join(TOKENIZER_KEYS))
        n_tokens = [-1] * len(texts)
    else:
        n_tokens = count_tokens(texts, tok, _as_bool(metadata.get("add_bos_token")))
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(
        {"text": texts, "n_tokens": n_tokens, "n_bytes": n_bytes})})


def loss_process_results(doc: dict, results: Sequence) -> dict:
    """Per document: (log-likelihood, tokens) and (log-likelihood, bytes) pairs."""
    (ll,) = results
    ll = float(ll[0] if isinstance(ll, (tuple, list)) else ll)
    n_tok = int(doc["n_tokens"])
    if n_tok < 0:
        raise ValueError("emergence_loss: the token count is unknown: run with --model_args pretrained=MODEL "
                         "(lm_eval passes it to the task) or --metadata '{\"tokenizer\": \"MODEL\"}'")
    n_bytes = int(doc["n_bytes"])
    return {"nll_per_token": (ll, n_tok), "token_perplexity": (ll, n_tok),
            "nats_per_byte": (ll, n_bytes), "bits_per_byte": (ll, n_bytes)}


def nll_per_unit(items: Sequence[tuple[float, int]]) -> float:
    """Corpus-level mean NLL: -sum(log-likelihood) / sum(units) (tokens or bytes).

    Pooled over the corpus, not averaged per document, so long documents weigh
    by their length, as in a pretraining loss.
    """
    lls, units = zip(*items)
    total = sum(units)
    if total <= 0:
        raise ValueError("emergence_loss: the corpus has no tokens/bytes to average over")
    return -math.fsum(lls) / total


def matthews_corrcoef(items: Sequence[tuple[int, int]]) -> float:
    """Matthews correlation of (gold, prediction) pairs, 0 when undefined.

    lm-eval's own ``matthews_corrcoef`` aggregation is bootstrapped for its
    stderr (100,000 sklearn calls by default: minutes per evaluation, for every
    checkpoint of a sweep); this one is the same statistic without a stderr.
    A constant predictor or a single-class sample gives 0 (sklearn's convention).
    """
    tp = fp = fn = tn = 0
    for gold, pred in items:
        g, p = bool(gold), bool(pred)
        tp += g and p
        tn += (not g) and (not p)
        fp += (not g) and p
        fn += g and not p
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom
