"""Functions the BIG-bench PassUntil task configs name with ``!function bigbench_utils.X``.

Importing this file (lm-eval does, while reading the YAML) registers
lm_eval_ext's metrics, aggregations and filters with lm-eval.
"""

import lm_eval_ext.registration  # noqa: F401  (registers passuntil_exact_match, pu, pass_at_k, ...)
from lm_eval_ext.tasks.bigbench import custom_dataset as bigbench_dataset  # noqa: F401
