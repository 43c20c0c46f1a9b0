"""Finetune a checkpoint on D examples of an emergence task (Snell et al. 2024).

The examples are the task's training documents in the exact layout the
lm-eval task shows them (:func:`lm_eval_ext.tasks.emergence.training_example`):
the loss is the mean cross-entropy of the answer tokens only, the prompt
tokens are context. Tokenisation mirrors lm-eval's ``hf`` backend for
log-likelihoods: the example is encoded whole and the prompt's tokens are
those of the prompt encoded alone.

Training runs through ``accelerate`` (CPU for tiny models; the same code on
one or several GPUs under ``accelerate launch``), full finetuning or LoRA
(``peft``). LoRA weights are merged into the model before saving, so the
result is a plain Hugging Face checkpoint directory that
``lm_eval --model hf --model_args pretrained=DIR`` loads as it is.

The output directory appears atomically: everything is written into a
temporary sibling, ``finetune.json`` (settings and training losses) last, and
the directory is renamed into place. A directory that exists is finished.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..tasks.emergence import Example, get_format, training_examples

log = logging.getLogger(__name__)

RECORD_NAME = "finetune.json"

#: Tasks outside :mod:`lm_eval_ext.tasks.emergence` whose examples the caller
#: supplies (``finetune(..., examples=...)``, ``run_sweep(..., examples=...)``):
#: name -> the lm-eval task that scores them (the manifest's ``task`` column).
#: The emergence lab registers its synthetic tasks here.
EXTERNAL_TASKS: dict[str, str] = {}


def register_external_task(name: str, lm_eval_task: str | None = None) -> None:
    """Allow ``FinetuneConfig(task=name)`` for a task whose examples the caller supplies."""
    EXTERNAL_TASKS[name] = lm_eval_task or name


@dataclass(frozen=True)
class FinetuneConfig:
    """What to train on and how. ``sample``: ``first`` (the first D training
    documents) or ``random`` (a sample of D drawn with ``seed``). ``steps``:
    optimiser steps; ``None`` means ``ceil(epochs * D / (batch_size * grad_accum))``."""

    task: str
    D: int
    seed: int = 0
    sample: str = "first"
    lr: float = 1e-5
    steps: int | None = None
    epochs: float = 3.0
    batch_size: int = 8
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_length: int = 1024
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.task not in EXTERNAL_TASKS:
            get_format(self.task)  # unknown task: ValueError
        checks = [("D", self.D, 1), ("batch_size", self.batch_size, 1), ("grad_accum", self.grad_accum, 1),
                  ("max_length", self.max_length, 2), ("lora_r", self.lora_r, 1)]
        for name, v, lo in checks:
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer or None, got {self.steps!r}")
        if self.sample not in ("first", "random"):
            raise ValueError(f"sample must be 'first' or 'random', got {self.sample!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be positive, got {self.epochs!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")

    @property
    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * self.D / (self.batch_size * self.grad_accum)))

    def hyperparameters(self) -> dict:
        """The settings that define a run (everything but task, D, seed), for manifests."""
        d = asdict(self)
        for k in ("task", "D", "seed"):
            d.pop(k)
        d["steps"] = self.total_steps
        d["lora_target"] = ",".join(self.lora_target) if self.lora_target else ""
        if not self.lora:
            for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target"):
                d.pop(k)
        return d


@dataclass
class FinetuneResult:
    out_dir: Path
    config: FinetuneConfig
    base: str
    losses: list[float] = field(default_factory=list)  # mean answer-token loss per optimiser step
    train_tokens: int = 0  # answer tokens seen (counted once per step)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"base": self.base, "task": self.config.task, "D": self.config.D, "seed": self.config.seed,
                "hyperparameters": self.config.hyperparameters(), "losses": self.losses,
                "train_tokens": self.train_tokens, "seconds": self.seconds}


def encode_example(tokenizer, ex: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels): labels are -100 on the prompt's tokens.

    Like lm-eval's ``_encode_pair``: whole = encode(prompt + completion), the
    answer tokens are those after the prompt's own encoding. Too long: the
    prompt is cut from the left (the answer is kept whole where it fits).
    """
    whole = tokenizer(ex.prompt + ex.completion)["input_ids"]
    n_prompt = len(tokenizer(ex.prompt)["input_ids"])
    if n_prompt >= len(whole):
        raise ValueError(f"the answer {ex.completion!r} adds no tokens after the prompt")
    labels = [-100] * n_prompt + whole[n_prompt:]
    if len(whole) > max_length:
        whole, labels = whole[-max_length:], labels[-max_length:]
    return whole, labels


def _collate(batch, pad_id: int):
    import torch

    n = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, (x, y) in enumerate(batch):  # right padding: positions 0.. stay those of the unpadded text
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        mask[i, :len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _atomic_dir(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))


def finetune(base: str | os.PathLike, out_dir: str | os.PathLike, config: FinetuneConfig, *,
             data_source: str | None = None, examples: list[Example] | None = None,
             progress: bool = True, dtype: str = "float32") -> FinetuneResult:
    """Finetune ``base`` (a local directory or hub name) and write the checkpoint to ``out_dir``.

    ``batch_size`` is per process: under ``accelerate launch`` on P devices an
    optimiser step sees ``P * batch_size * grad_accum`` examples.
    ``examples`` overrides the task's training data (tests); otherwise
    :func:`training_examples` (``data_source``: ``hub`` or a local directory,
    see :mod:`lm_eval_ext.tasks.emergence`). ``out_dir`` must not exist.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    from ..conventions.console import progress_bar, quiet_upstream
    from ..conventions.files import apply_umask

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists: finetuning writes a new directory")
    if examples is None:
        if config.task in EXTERNAL_TASKS:
            raise ValueError(f"task {config.task!r} has no built-in training data: pass examples=")
        examples = training_examples(config.task, config.D, seed=config.seed if config.sample == "random" else None,
                                     source=data_source)
    if len(examples) != config.D:
        raise ValueError(f"got {len(examples)} examples for D = {config.D}")
    started = time.monotonic()
    quiet_upstream()  # transformers' loading/saving bars off in logs
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError(f"{base}: the tokenizer has neither a pad nor an eos token")
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=getattr(torch, dtype))
    # Never longer than the model's context (GPT-2: n_positions; most others: max_position_embeddings).
    context = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    max_length = min(config.max_length, context) if context else config.max_length
    encoded = [encode_example(tokenizer, ex, max_length) for ex in examples]
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target) if config.lora_target else None, task_type="CAUSAL_LM"))
    model.train()
    # The data order depends on the seed only (not on the global RNG state).
    gen = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(encoded, batch_size=config.batch_size, shuffle=True, generator=gen,
                                         collate_fn=lambda b: _collate(b, pad_id))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.total_steps
    # accelerate steps a prepared scheduler once per process at every optimiser step
    n_proc = accelerator.num_processes
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(config.warmup_ratio * steps) * n_proc,
                              num_training_steps=steps * n_proc)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    def batches():
        while True:  # epochs until the step budget is spent
            yield from loader

    it = batches()
    result = FinetuneResult(out_dir=out_dir, config=config, base=str(base))
    bar = progress_bar(range(steps), desc=f"finetune {config.task} D={config.D}",
                       enabled=progress and accelerator.is_local_main_process, leave=False)
    for _ in bar:
        step_loss, step_tokens = 0.0, 0
        for _ in range(config.grad_accum):
            batch = next(it)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            step_loss += accelerator.gather(loss.detach()).mean().item() / config.grad_accum
            step_tokens += int(accelerator.gather((batch["labels"] != -100).sum().reshape(1)).sum())
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"finetuning {base}: the loss became {step_loss} (lower the learning rate)")
        result.losses.append(step_loss)
        result.train_tokens += step_tokens
        bar.set_postfix(loss=f"{step_loss:.4f}")
    accelerator.wait_for_everyone()
    result.seconds = round(time.monotonic() - started, 3)
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model)
        if config.lora:
            model = model.merge_and_unload()  # a plain checkpoint lm-eval loads without peft
        model.eval()
        tmp = _atomic_dir(out_dir)
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / RECORD_NAME).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
            apply_umask(tmp, tree=True)  # mkdtemp's 0700, safetensors' 0600: the umask's modes
            os.rename(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    accelerator.wait_for_everyone()
    return result


def read_record(out_dir: str | os.PathLike) -> dict | None:
    """The ``finetune.json`` of a finished run, or None if ``out_dir`` holds none."""
    path = Path(out_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None


def answer_loss(model_dir: str | os.PathLike, examples: list[Example], max_length: int = 1024) -> float:
    """Mean answer-token cross-entropy of a checkpoint on ``examples`` (pooled over tokens)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids, labels = encode_example(tok, ex, max_length)
            logits = model(torch.tensor([ids])).logits[0, :-1]
            y = torch.tensor(labels[1:])
            keep = y != -100
            total += torch.nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum").item()
            n += int(keep.sum())
    return total / n
