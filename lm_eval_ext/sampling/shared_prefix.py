"""``hf-shared-prefix``: lm-eval's ``hf`` model with one prompt prefill per
distinct prompt in a batch.

PassUntil draws many samples per prompt (``repeats: K`` sends K identical
``generate_until`` requests). lm-eval's Collator sorts identical contexts next
to each other, so a batch typically holds a few distinct prompts, each many
times, and ``HFLM`` recomputes the prompt's prefill for every row.
:class:`SharedPrefixHFLM` computes it once per distinct row and copies the
key/value cache to the repeats; decoding is untouched.

The model is registered with lm-eval when this module is imported. lm-eval
0.4.13 looks the model up before it loads any task, so from the command line
import this module first:

    python -c "import lm_eval_ext.sampling.shared_prefix; from lm_eval.__main__ import cli_evaluate; cli_evaluate()" \
        run --model hf-shared-prefix --model_args pretrained=...,batch_size=10 --tasks ...

From Python: ``import lm_eval_ext.sampling.shared_prefix`` and then
``lm_eval.simple_evaluate(model="hf-shared-prefix", ...)``.
"""

from __future__ import annotations

import inspect
import logging

import torch
import transformers
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
from transformers.generation.utils import GenerationMixin

import lm_eval.models  # noqa: F401  (lm-eval's built-in models first)
from lm_eval.models.huggingface import HFLM

from . import register_model

__all__ = ["MODEL_NAME", "SharedPrefixHFLM", "register"]

log = logging.getLogger(__name__)

MODEL_NAME = "hf-shared-prefix"

# Cache layers whose per-row state is exactly keys/values[batch, ...], so that
# ``batch_select_indices`` copies a row completely (their other state, such as
# a sliding window's cumulative length, is the same for every row).
_SELECTABLE_LAYERS = (DynamicLayer, DynamicSlidingWindowLayer)

# generate() options under which a pre-filled cache is not simply continued.
_UNSUPPORTED_KWARGS = (
    "past_key_values", "cache_implementation", "generation_config", "assistant_model",
    "prompt_lookup_num_tokens", "inputs_embeds", "position_ids", "return_dict_in_generate",
)
# generate()'s input preparation that the shared prefill reproduces; a model class
# that overrides any of these (multimodal models, Phi-3's rope switch, Qwen2-VL's
# 3D positions, ...) takes the plain path.
_STANDARD_GENERATE_STEPS = (
    "prepare_inputs_for_generation", "_prepare_position_ids_for_generation", "_prepare_cache_for_generation",
)


class SharedPrefixHFLM(HFLM):
    """``HFLM`` whose ``generate_until`` runs the prompt prefill once per
    distinct row of a batch.

    Guarantees:

    * Rows of a batch that are identical (same token ids *and* attention
      mask, i.e. same prompt after left padding) share one forward pass over
      the prompt minus its last token; the resulting ``DynamicCache`` is
      expanded to the full batch with ``Cache.batch_select_indices``.
    * ``model.generate`` is then called by ``HFLM._model_generate`` itself with
      the full prompt, attention mask, the same generation kwargs, stopping
      criteria and ``max_length``, plus that cache, so it only runs the last
      prompt token onward. The decoding strategy (sampling, temperature,
      top-p, penalties, ...) is exactly the task's.
    * The shared prefill draws no random numbers, so with a fixed seed
      generate sees the same RNG stream as under ``hf``: outputs equal
      ``hf``'s up to floating-point differences between a batched full-prompt
      prefill and this split one (greedy outputs are equal in practice).
    * Whenever sharing is not possible or not known to be exact, the plain
      ``HFLM`` path runs: no duplicated rows, seq2seq models, models without
      a batch-selectable ``DynamicCache`` (static/quantized/offloaded caches,
      Mamba/linear-attention layers, encoder-decoder caches), beam search or
      ``num_return_sequences > 1``, a caller-supplied cache, assisted or
      prompt-lookup decoding, right padding, or a one-token prompt. The reason
      is logged once, at debug level.

    ``shared_prefill_stats`` counts batches that shared their prefill, batches
    that fell back, and prompt tokens whose prefill was not recomputed.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared_prefill_stats = {"shared_batches": 0, "fallback_batches": 0, "prefill_tokens_saved": 0}
        self._fallback_reasons_logged: set[str] = set()

    def generate_until(self, requests, disable_tqdm: bool = False):
        """``HFLM.generate_until``; lm-eval's evaluator passes no
        ``disable_tqdm``, so its request bar is off here when stderr is not a
        terminal (see :func:`lm_eval_ext.conventions.console.quiet`)."""
        from ..conventions.console import quiet

        return super().generate_until(requests, disable_tqdm=disable_tqdm or quiet())

    # -- helpers ---------------------------------------------------------------

    def _fallback(self, reason: str, context, max_length, stop, generation_kwargs) -> torch.Tensor:
        if reason not in self._fallback_reasons_logged:
            self._fallback_reasons_logged.add(reason)
            log.debug("%s: using HFLM's generate (no shared prefill): %s", MODEL_NAME, reason)
        self.shared_prefill_stats["fallback_batches"] += 1
        return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def _unsupported(self, context: torch.Tensor, attention_mask, generation_kwargs: dict) -> str | None:
        """Why the shared prefill cannot be used for this call (None if it can)."""
        model = self.model
        if self.backend != "causal" or getattr(model.config, "is_encoder_decoder", False):
            return "not a decoder-only (causal) model"
        if not isinstance(model, transformers.PreTrainedModel):
            return f"model is a {type(model).__name__}, not a transformers PreTrainedModel"
        supports_dynamic = getattr(model, "_supports_default_dynamic_cache", None)
        if supports_dynamic is None or not supports_dynamic():
            return f"{type(model).__name__} does not use a DynamicCache"
        for step in _STANDARD_GENERATE_STEPS:
            if getattr(type(model), step, None) is not getattr(GenerationMixin, step):
                return f"{type(model).__name__} overrides GenerationMixin.{step}"
        if "past_key_values" not in inspect.signature(model.forward).parameters:
            return f"{type(model).__name__}.forward takes no past_key_values"
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != context.shape:
            return "no attention mask of the context's shape"
        for key in _UNSUPPORTED_KWARGS:
            if generation_kwargs.get(key) not in (None, False):
                return f"generation kwarg {key!r}"
        gen_config = getattr(model, "generation_config", None)
        for key in ("num_beams", "num_return_sequences"):
            value = generation_kwargs.get(key, getattr(gen_config, key, 1))
            if value not in (None, 1):
                return f"{key}={value}"
        if getattr(gen_config, "cache_implementation", None) is not None:
            return "model's generation_config sets cache_implementation"
        if context.shape[1] < 2:
            return "prompt of fewer than two tokens"
        if not bool((attention_mask[:, -1] != 0).all()):
            return "context is not left-padded"
        return None

    def _new_cache(self) -> DynamicCache | None:
        """The cache generate() would create (None if its layers cannot be batch-selected)."""
        cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        if cache.layers and not all(type(layer) in _SELECTABLE_LAYERS for layer in cache.layers):
            return None
        return cache

    # -- the override ------------------------------------------------------------

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs) -> torch.Tensor:
        attention_mask = generation_kwargs.get("attention_mask")
        reason = self._unsupported(context, attention_mask, generation_kwargs)
        if reason is not None:
            return self._fallback(reason, context, max_length, stop, generation_kwargs)

        # Distinct rows: token ids and mask together; `inverse` maps every row to its distinct row.
        rows = torch.cat([context, attention_mask.to(context.dtype)], dim=1)
        unique_rows, inverse = torch.unique(rows, dim=0, return_inverse=True)
        n_unique, batch = unique_rows.shape[0], context.shape[0]
        if n_unique == batch:
            return self._fallback("no repeated rows in the batch", context, max_length, stop, generation_kwargs)
        cache = self._new_cache()
        if cache is None:
            return self._fallback("cache layers cannot be batch-selected", context, max_length, stop, generation_kwargs)

        # Prefill the prompt minus its last token, once per distinct row. Position ids as
        # transformers' generate makes them (GenerationMixin._prepare_position_ids_for_generation,
        # which GPT-2 and Llama use unchanged in 5.23): mask.cumsum(-1) - 1, set to 0 on (left)
        # padding, and only for models whose forward takes them.
        length = context.shape[1]
        prefix_ids = unique_rows[:, : length - 1]
        prefix_mask = unique_rows[:, length : 2 * length - 1].to(attention_mask.dtype)
        forward_kwargs = dict(input_ids=prefix_ids, attention_mask=prefix_mask, past_key_values=cache, use_cache=True)
        forward_params = inspect.signature(self.model.forward).parameters
        if "position_ids" in forward_params:
            position_ids = prefix_mask.long().cumsum(-1) - 1
            forward_kwargs["position_ids"] = position_ids.masked_fill(prefix_mask == 0, 0)
        if "logits_to_keep" in forward_params:
            forward_kwargs["logits_to_keep"] = 1  # the prefill's logits are not used
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            out = self.model(**forward_kwargs)
        cache = out.past_key_values
        if (
            type(cache) is not DynamicCache
            or not cache.layers
            or not all(type(layer) in _SELECTABLE_LAYERS for layer in cache.layers)
            or cache.get_seq_length() != length - 1
        ):
            return self._fallback("model returned an unexpected cache", context, max_length, stop, generation_kwargs)
        # n_unique rows -> batch rows, in order (a CPU index works for layers on any device)
        cache.batch_select_indices(inverse.cpu())

        self.shared_prefill_stats["shared_batches"] += 1
        self.shared_prefill_stats["prefill_tokens_saved"] += (batch - n_unique) * (length - 1)
        # HFLM's own _model_generate: same kwargs, stopping criteria, max_length and autocast;
        # generate() sees a cache of length-1 tokens and runs the last prompt token onward.
        return super()._model_generate(context, max_length, stop, past_key_values=cache, **generation_kwargs)


def register() -> None:
    """Register :class:`SharedPrefixHFLM` as ``hf-shared-prefix`` (idempotent)."""
    register_model(MODEL_NAME, SharedPrefixHFLM)

register()
