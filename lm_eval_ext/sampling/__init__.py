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
