"""Functions the passuntil task configs name with ``!function utils.X``.

Importing this file (lm-eval does, while reading the YAML) registers
lm_eval_ext's metrics, aggregations and filters with lm-eval.
"""

import lm_eval_ext.registration  # noqa: F401  (registers passuntil_execute, pu, pass_at_k, ...)
from lm_eval_ext.tasks.humaneval import custom_dataset as humaneval_dataset  # noqa: F401
