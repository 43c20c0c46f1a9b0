"""Drawing samples: the adaptive sample-until-pass engine and model backends.

- :mod:`.adaptive`: the schedule, stopping rules and resumable state (no
  lm-eval: the tests drive it with simulated Bernoulli draws);
- :mod:`.runner`: the engine through lm-eval (``lm-eval-ext passuntil``), in
  lm-eval's output layout;
- :mod:`.shared_prefix`: the ``hf-shared-prefix`` model backend (one prefill
  shared by the K samples of a prompt);
- :mod:`.vllm_passuntil`: the ``vllm-passuntil`` backend (one vLLM request with
  ``n = K`` per instance, per-sample seeds, data-parallel replicas that live for
  the whole run); needs vLLM, installed apart (``bench/setup_vllm_env.sh``).
"""


def register_model(name: str, cls: type) -> None:
    """Register a model backend with lm-eval under ``name``, idempotently: the
    same class (or its module imported again, e.g. through the lazy entry that
    :mod:`lm_eval_ext.registration` puts there first) is kept; someone else's
    class under that name is kept too, with a warning."""
    import logging

    from lm_eval.api import registry

    if name not in registry.model_registry:
        registry.register_model(name)(cls)
        return
    existing = registry.model_registry.get(name)
    same = (getattr(existing, "__module__", None), getattr(existing, "__qualname__", None))
    if existing is not cls and same != (cls.__module__, cls.__qualname__):
        logging.getLogger(__name__).warning(
            "lm_eval_ext: model %r is already registered by someone else; keeping theirs", name)
