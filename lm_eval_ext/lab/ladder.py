"""A ladder of tiny decoder-only transformers trained on the synthetic tasks.

Each rung is a ``transformers.LlamaForCausalLM`` built from a config (rotary
positions, so the length-generalisation tests are not simply out of the
position table's range) and trained from scratch with a plain torch loop
driven by ``accelerate`` (CPU or GPU, same code). A finished model is an
ordinary Hugging Face checkpoint directory (``config.json``,
``model.safetensors``, ``generation_config.json``, tokenizer files) that
``lm_eval --model hf --model_args pretrained=DIR`` loads.

Determinism: the initial weights come from ``torch.manual_seed(seed)`` and
the batch of step t is a pure function of (seed, t)
(:func:`~lm_eval_ext.lab.synthetic.training_batch`), so a seed fixes the run.

Resumability: the training state (weights, optimizer, schedule, step) is
saved atomically every ``checkpoint_every`` steps into ``<dir>.partial/``;
an interrupted model restarts from there. The finished model is written to a
temporary directory and renamed into place, with ``lab_model.json`` (its
facts) written last, so a directory holding that file is complete and is
skipped by later runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..conventions.files import write_json_atomic, write_text_atomic
from ..conventions.console import progress_bar
from ..conventions.files import apply_umask
from .synthetic import TaskSpec, build_tokenizer, encode_examples, training_batch, held_out_prompts, ALPHABET

MARKER = "lab_model.json"
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["model", "N", "seed", "tokens", "flops", "loss", "size", "d_model", "n_layer", "steps"]


@dataclasses.dataclass(frozen=True)
class Size:
    """One rung: width, depth, heads. The MLP is 4x wide; embeddings are tied."""

    name: str
    d_model: int
    n_layer: int
    n_head: int

    def __post_init__(self):
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"size {self.name}: d_model {self.d_model} must split into {self.n_head} heads "
                             "of even width (rotary embeddings)")


#: The default ladder: ~2.6k to ~135k parameters (about 50x).
DEFAULT_SIZES = (
    Size("xs", 12, 1, 2),
    Size("s", 20, 1, 2),
    Size("m", 32, 2, 4),
    Size("l", 48, 2, 4),
    Size("xl", 64, 2, 4),
)


def parse_sizes(text: str) -> list[Size]:
    """``"16x1,24x2,32x2"`` (d_model x layers[x heads]) -> sizes; heads default
    to d_model // 16 (at least 2)."""
    out = []
    for part in text.split(","):
        bits = part.strip().lower().split("x")
        try:
            nums = [int(b) for b in bits]
        except ValueError:
            raise ValueError(f"--sizes: {part!r} is not WIDTHxLAYERS[xHEADS]") from None
        if len(nums) not in (2, 3) or min(nums) < 1:
            raise ValueError(f"--sizes: {part!r} is not WIDTHxLAYERS[xHEADS]")
        d, L = nums[:2]
        h = nums[2] if len(nums) == 3 else max(2, d // 16)
        out.append(Size(f"d{d}L{L}", d, L, h))
    if len(out) < 3:
        raise ValueError("--sizes: give at least 3 sizes (2 to fit, 1 to predict)")
    return out


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    checkpoint_every: int = 200
    #: Optional muP-style scaling of the peak learning rate with width:
    #: lr * min(1, lr_width_ref / d_model). Off by default: on the default
    #: ladder it slowed the wider rungs down (addition PU of the two largest
    #: halved at 600 steps), which flattens the curve the lab is about.
    lr_width_ref: int | None = None
    spec: TaskSpec = TaskSpec()

    def peak_lr(self, size: "Size") -> float:
        if self.lr_width_ref is None:
            return self.lr
        return self.lr * min(1.0, self.lr_width_ref / size.d_model)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_config(size: Size, spec: TaskSpec):
    from transformers import LlamaConfig

    # Positions: the longest test prompt + answer, with room to spare.
    return LlamaConfig(vocab_size=len(ALPHABET) + 1, hidden_size=size.d_model,
                       intermediate_size=4 * size.d_model, num_hidden_layers=size.n_layer,
                       num_attention_heads=size.n_head, num_key_value_heads=size.n_head,
                       max_position_embeddings=max(64, 2 * spec.max_chars), tie_word_embeddings=True,
                       bos_token_id=0, eos_token_id=0, pad_token_id=0, rms_norm_eps=1e-5)


def count_parameters(size: Size, spec: TaskSpec = TaskSpec()) -> int:
    """Parameters of the rung (tied embeddings counted once), without training it."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(model_config(size, spec))
    return sum(p.numel() for p in model.parameters())


def model_dir(root: Path, size: Size, seed: int) -> Path:
    return Path(root) / f"{size.name}-s{seed}"


def is_trained(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def read_marker(path: Path) -> dict:
    return json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))


def _lr_at(step: int, s: TrainSettings, peak: float) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < s.warmup:
        return peak * (step + 1) / s.warmup
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _save_state_atomic(path: Path, state: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        apply_umask(tmp)  # mkstemp's 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def train_model(root: Path, size: Size, seed: int, settings: TrainSettings = TrainSettings(), *,
                device: str = "cpu", progress: bool = True) -> dict:
    """Train one rung (or return the facts of the finished one): the dict
    written to ``<dir>/lab_model.json`` (model path, N, seed, tokens,
    flops = 6 N tokens, final train loss, ...)."""
    import torch
    from accelerate import Accelerator
    from transformers import GenerationConfig, LlamaForCausalLM

    out = model_dir(root, size, seed)
    if is_trained(out):
        return read_marker(out)
    spec = settings.spec
    partial = out.with_name(out.name + ".partial")
    state_path = partial / "train_state.pt"

    accelerator = Accelerator(cpu=(device == "cpu"))
    # Weights from a private RNG stream: the seed alone fixes them.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(model_config(size, spec))
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98))
    start, tokens, losses = 0, 0, []
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        if st.get("settings") != settings.to_dict() or st.get("size") != dataclasses.asdict(size):
            raise ValueError(f"{state_path} was written with other settings; delete {partial} to start over")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start, tokens, losses = st["step"], st["tokens"], st["losses"]
    model, opt = accelerator.prepare(model, opt)
    model.train()
    exclude = held_out_prompts(spec)
    peak = settings.peak_lr(size)
    max_pos = model_config(size, spec).max_position_embeddings

    bar = None
    if progress:
        bar = progress_bar(total=settings.steps, initial=start, desc=f"train {out.name} ({n_params / 1e3:.0f}k)",
                           unit="step", leave=False)
    t0 = time.time()
    try:
        for step in range(start, settings.steps):
            ids, labels, mask = encode_examples(training_batch(seed, step, settings.batch_size, spec, exclude),
                                                max_pos)
            ids, labels, mask = (t.to(accelerator.device) for t in (ids, labels, mask))
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, settings, peak)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(mask.sum())
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                _save_state_atomic(state_path, {
                    "model": accelerator.unwrap_model(model).state_dict(), "opt": opt.state_dict(),
                    "step": step + 1, "tokens": tokens, "losses": losses,
                    "settings": settings.to_dict(), "size": dataclasses.asdict(size)})
    finally:
        if bar is not None:
            bar.close()

    final = accelerator.unwrap_model(model).to("cpu")
    final.eval()
    final.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    tail = losses[-min(50, len(losses)):]
    facts = {"model": str(out), "N": int(n_params), "seed": int(seed), "tokens": int(tokens),
             "flops": float(6.0 * n_params * tokens), "loss": float(sum(tail) / len(tail)),
             "size": size.name, "d_model": size.d_model, "n_layer": size.n_layer, "n_head": size.n_head,
             "steps": settings.steps, "train_seconds_last_session": round(time.time() - t0, 2),
             "settings": settings.to_dict()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        final.save_pretrained(tmp)
        build_tokenizer(max_pos).save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        apply_umask(tmp, tree=True)  # mkdtemp's 0700, safetensors' 0600: the umask's modes
        if out.exists():
            shutil.rmtree(out)  # an incomplete earlier directory (no marker)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)
    return facts


def write_manifest(root: Path, path: Path | None = None) -> Path:
    """``manifest.csv`` (read by :func:`analysis.ingest.read_manifest`) from
    every finished model under ``root``; written atomically."""
    import csv
    import io

    root = Path(root)
    path = Path(path) if path else root / MANIFEST
    rows = [read_marker(d) for d in sorted(root.iterdir()) if d.is_dir() and is_trained(d)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["N"], r["seed"])):
        w.writerow(r)
    write_text_atomic(path, buf.getvalue())
    return path


def train_ladder(root: Path, sizes: Sequence[Size], seeds: Sequence[int], settings: TrainSettings = TrainSettings(),
                 *, device: str = "cpu", progress: bool = True) -> list[dict]:
    """Train every (size, seed) not trained yet; refresh the manifest after each."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    facts = []
    for size in sizes:
        for seed in seeds:
            facts.append(train_model(root, size, seed, settings, device=device, progress=progress))
            write_manifest(root)
    return facts


def record_or_refuse(path: Path, settings: dict, what: str) -> None:
    """Record the settings a run directory was made with at ``path``; a later
    run with other settings is refused (a resumed run must not mix results
    of two configurations).  ``what``: the error's subject, e.g. "a lab run"."""
    if path.is_file():
        theirs = json.loads(path.read_text(encoding="utf-8"))
        diffs = sorted(k for k in set(settings) | set(theirs) if settings.get(k) != theirs.get(k))
        if diffs:
            raise ValueError(f"{path.parent} holds {what} with other settings (differing: {', '.join(diffs)}); "
                             f"use another --output_path or delete {path.parent} to start over")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, settings)
