"""``hf-shared-prefix`` (lm_eval_ext.sampling.shared_prefix): the outputs of lm-eval's ``hf``,
with one prompt prefill per distinct prompt of a batch."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from scipy import stats

import lm_eval_ext.sampling.shared_prefix as spm
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model, model_registry

PROMPTS = [  # different token lengths, so that batches are left-padded
    "def add(a, b):",
    'def is_prime(n):\n    """Return True if n is prime."""',
    "import math\n\ndef area(r):\n    return",
]
SINGLETONS = ["class Stack:\n    def __init__(self):", "x = [1, 2"]
UNTIL = ["\n\n", "\ndef"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The models here are tiny: one thread is as fast, and it does not collapse
    when other processes share the cores (OpenMP threads spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sharp_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny GPT-2 with its block weights, position embeddings and final
    layer-norm gain scaled up. The raw random model is almost uniform and just
    echoes its last token, which would hide a cache taken from the wrong row or
    wrong position ids; this one's next token depends strongly on the context
    and on positions (a shift of all positions by one moves the next-token
    distribution by a total variation of about 0.6), with perplexity ~45."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("sharp_tiny_model") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("transformer.h.") and name.endswith(".weight") and ".ln_" not in name:
                param.mul_(5.0)
        model.transformer.wpe.weight.mul_(2.0)
        model.transformer.ln_f.weight.mul_(20.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def make_lm(sharp_model_dir):
    """make_lm(name, batch_size): an lm-eval model built the way the CLI builds it (cached)."""
    built = {}

    def make(name: str, batch_size: int = 8):
        key = (name, batch_size)
        if key not in built:
            built[key] = get_model(name).create_from_arg_string(
                f"pretrained={sharp_model_dir},dtype=float32,device=cpu,batch_size={batch_size}"
            )
        return built[key]

    return make


def _requests(prompts, gen_kwargs):
    return [Instance("generate_until", None, (p, dict(gen_kwargs)), i) for i, p in enumerate(prompts)]


def _mixed_prompts():
    return [p for p in PROMPTS for _ in range(4)] + SINGLETONS


def test_registered_once_and_idempotent():
    assert model_registry.get("hf-shared-prefix") is spm.SharedPrefixHFLM
    assert issubclass(spm.SharedPrefixHFLM, get_model("hf"))
    spm.register()  # already registered to this class: nothing happens, nothing raises
    assert get_model("hf-shared-prefix") is spm.SharedPrefixHFLM
    assert "hf" in model_registry and "vllm" in model_registry  # built-ins still there


def test_greedy_outputs_equal_hf(make_lm):
    """3 prompts x 4 repeats + 2 singletons, left-padded batches of 8: identical strings."""
    gen_kwargs = {"until": UNTIL, "max_gen_toks": 16, "do_sample": False}
    shared, plain = make_lm("hf-shared-prefix"), make_lm("hf")
    before = dict(shared.shared_prefill_stats)
    got = shared.generate_until(_requests(_mixed_prompts(), gen_kwargs), disable_tqdm=True)
    want = plain.generate_until(_requests(_mixed_prompts(), gen_kwargs), disable_tqdm=True)
    assert got == want
    assert len(set(want)) >= 4 and any(want), want  # the model's outputs do depend on the prompt
    for i in range(0, 12, 4):  # greedy repeats agree with each other
        assert len(set(got[i : i + 4])) == 1
    assert shared.shared_prefill_stats["shared_batches"] > before["shared_batches"]


def test_sampling_same_seed_same_outputs_and_varied(make_lm):
    """Sampling: repeats differ from each other, and since the shared prefill
    draws no random numbers, a fixed seed gives hf's samples."""
    gen_kwargs = {"until": UNTIL, "max_gen_toks": 16, "do_sample": True, "temperature": 1.0}
    outs = {}
    for name in ("hf-shared-prefix", "hf"):
        torch.manual_seed(1234)
        outs[name] = make_lm(name).generate_until(_requests(_mixed_prompts(), gen_kwargs), disable_tqdm=True)
    assert outs["hf-shared-prefix"] == outs["hf"]
    for i in range(0, 12, 4):
        assert len(set(outs["hf"][i : i + 4])) > 1, outs["hf"][i : i + 4]


def _chi2_pvalue(first_tokens: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson chi-square of observed token counts against probs; tokens with
    an expected count below 5 are pooled into one bin."""
    n = first_tokens.numel()
    observed = torch.bincount(first_tokens, minlength=probs.numel()).double()
    expected = probs.double() * n
    big = expected >= 5
    obs = torch.cat([observed[big], observed[~big].sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    assert big.sum() >= 8  # enough bins for the test to mean something
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    return float(stats.chi2.sf(chi2, df=obs.numel() - 1))


def test_first_token_distribution_matches_softmax(make_lm):
    """400 samples each of a short (left-padded) and a long prompt, sampled in
    batches of 100 with 2 distinct rows: the first generated token follows the
    model's next-token softmax for each prompt. A cache from the wrong row or
    position ids off by one give p-values below 1e-20 here."""
    lm = make_lm("hf-shared-prefix", batch_size=100)
    short, long = PROMPTS[0], PROMPTS[1]
    tok = lm.tokenizer
    with torch.no_grad():
        ref = {p: lm.model(tok(p, return_tensors="pt").input_ids).logits[0, -1].softmax(-1) for p in (short, long)}
    ctx, mask = lm.tok_batch_encode([long] * 50 + [short] * 50)
    assert (mask[50:] == 0).any()  # the short prompt is left-padded
    first = []
    before = dict(lm.shared_prefill_stats)
    torch.manual_seed(0)
    for _ in range(8):
        out = lm._model_generate(context=ctx, attention_mask=mask, max_length=ctx.shape[1] + 1,
                                 stop=[tok.eos_token], do_sample=True, temperature=1.0)
        first.append(out[:, ctx.shape[1]])
    first = torch.stack(first)  # (8 batches, 100 rows)
    assert lm.shared_prefill_stats["shared_batches"] == before["shared_batches"] + 8
    p_long = _chi2_pvalue(first[:, :50].reshape(-1), ref[long])
    p_short = _chi2_pvalue(first[:, 50:].reshape(-1), ref[short])
    assert p_long > 1e-4 and p_short > 1e-4, (p_long, p_short)


def test_prompt_prefilled_once_per_distinct_row(make_lm):
    """Forward calls under generate_until: hf runs (12, L) once, hf-shared-prefix
    runs (3, L-1) once and then only single-token steps."""
    gen_kwargs = {"until": UNTIL, "max_gen_toks": 8, "do_sample": True, "temperature": 1.0}
    prompts = [p for p in PROMPTS for _ in range(4)]
    length = max(len(make_lm("hf").tok_encode(p)) for p in PROMPTS)
    shapes = {}
    for name in ("hf-shared-prefix", "hf"):
        lm = make_lm(name, batch_size=12)
        seen = []

        def hook(module, args, kwargs, seen=seen):
            ids = kwargs.get("input_ids", args[0] if args else None)
            seen.append(tuple(ids.shape))

        handle = lm.model.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            lm.generate_until(_requests(prompts, gen_kwargs), disable_tqdm=True)
        finally:
            handle.remove()
        shapes[name] = seen
    assert shapes["hf"][0] == (12, length)
    assert shapes["hf-shared-prefix"][0] == (3, length - 1)
    assert all(s == (12, 1) for s in shapes["hf-shared-prefix"][1:]), shapes["hf-shared-prefix"]
    assert all(s == (12, 1) for s in shapes["hf"][1:])
    assert len(shapes["hf-shared-prefix"]) == len(shapes["hf"]) + 1
    prompt_tokens = {name: sum(b * s for b, s in seen if s > 1) for name, seen in shapes.items()}
    assert prompt_tokens["hf-shared-prefix"] == 3 * (length - 1)
    assert prompt_tokens["hf"] == 12 * length


def test_falls_back_when_nothing_is_shared(make_lm, caplog):
    lm = make_lm("hf-shared-prefix", batch_size=3)  # a fresh instance: its reasons are not logged yet
    gen_kwargs = {"until": UNTIL, "max_gen_toks": 4, "do_sample": False}
    with caplog.at_level(logging.DEBUG, logger=spm.__name__):
        got = lm.generate_until(_requests(PROMPTS, gen_kwargs), disable_tqdm=True)
        lm.generate_until(_requests(PROMPTS, gen_kwargs), disable_tqdm=True)
    assert got == make_lm("hf").generate_until(_requests(PROMPTS, gen_kwargs), disable_tqdm=True)
    assert lm.shared_prefill_stats["shared_batches"] == 0
    assert lm.shared_prefill_stats["fallback_batches"] == 2
    reasons = [r.getMessage() for r in caplog.records if r.name == spm.__name__]
    assert len(reasons) == 1 and "no repeated rows" in reasons[0], reasons  # logged once
    # unsupported generate options also take the plain path
    ctx, mask = lm.tok_batch_encode([PROMPTS[0]] * 2)
    assert "num_beams" in lm._unsupported(ctx, mask, {"num_beams": 2})
    assert lm._unsupported(ctx, mask, {"do_sample": True}) is None


def _random_decoder(kind: str):
    from transformers import MistralConfig, MistralForCausalLM, Phi3Config, Phi3ForCausalLM

    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                  initializer_range=0.2)
    classes = {
        "mistral-sliding-window": (MistralConfig, MistralForCausalLM, {"sliding_window": 6}),  # Llama + window
        "phi3": (Phi3Config, Phi3ForCausalLM, {}),  # overrides prepare_inputs_for_generation
    }
    config_cls, model_cls, extra = classes[kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_cls(config_cls(**common, **extra)).eval()


@pytest.mark.parametrize("kind, shares", [("mistral-sliding-window", True), ("phi3", False)])
def test_other_decoders_equal_hf(kind, shares, tiny_model_dir, tmp_path):
    """A Llama-style model (RoPE, grouped-query attention) whose sliding-window
    caches are shorter than the prompts (Mistral, window 6), and a model whose
    generate() input preparation is overridden (Phi-3: plain path): the same
    greedy and same-seed sampled outputs as hf."""
    from transformers import AutoTokenizer

    model_dir = tmp_path / kind
    _random_decoder(kind).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model_dir)
    outs = {}
    for name in ("hf", "hf-shared-prefix"):
        lm = get_model(name).create_from_arg_string(f"pretrained={model_dir},dtype=float32,device=cpu,batch_size=8")
        for do_sample in (False, True):
            gen_kwargs = {"until": UNTIL, "max_gen_toks": 8, "do_sample": do_sample, "temperature": 1.0}
            torch.manual_seed(5)
            outs[name, do_sample] = lm.generate_until(_requests(_mixed_prompts(), gen_kwargs), disable_tqdm=True)
    assert outs["hf-shared-prefix", False] == outs["hf", False]
    assert outs["hf-shared-prefix", True] == outs["hf", True]
    assert len(set(outs["hf", True])) > 8
    assert (lm.shared_prefill_stats["shared_batches"] > 0) is shares
    assert (lm.shared_prefill_stats["fallback_batches"] > 0) is not shares


def test_simple_evaluate_end_to_end(tiny_model_dir, tmp_path, monkeypatch):
    """A generate_until task with repeats: 8 through lm_eval.simple_evaluate."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    made = []
    init = spm.SharedPrefixHFLM.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(spm.SharedPrefixHFLM, "__init__", recording_init)

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "target": "pass"}) + "\n" for p in PROMPTS))
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "shared_prefix_smoke.yaml").write_text(
        f"""task: shared_prefix_smoke
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data))}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
repeats: 8
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 8
  do_sample: true
  temperature: 1.0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    )
    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    res = lm_eval.simple_evaluate(
        model="hf-shared-prefix",
        model_args=f"pretrained={tiny_model_dir},dtype=float32",
        tasks=["shared_prefix_smoke"],
        task_manager=tm,
        device="cpu",
        batch_size=8,
        log_samples=True,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
    )
    assert "exact_match,none" in res["results"]["shared_prefix_smoke"]
    samples = res["samples"]["shared_prefix_smoke"]
    assert len(samples) == len(PROMPTS)
    assert all(len(s["resps"][0]) == 8 for s in samples)
    assert len(made) == 1
    stats_ = made[0].shared_prefill_stats
    # 3 prompts x 8 repeats, batches of 8, sorted by prompt: every batch is one prompt 8 times
    assert stats_["shared_batches"] == 3 and stats_["fallback_batches"] == 0, stats_
