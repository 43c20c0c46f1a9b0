"""Analyses over directories of lm-eval results (scaling laws, emergence).

So far: reading the per-instance PassUntil counts that lm_eval_ext's tasks
write into lm-eval's samples JSONL (see :mod:`analysis.samples`).
"""
