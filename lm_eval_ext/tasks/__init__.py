"""The data and prompt builders the task YAMLs call (``task_configs/*/utils.py``):
HumanEval (:mod:`.humaneval`), BIG-bench (:mod:`.bigbench`) and the emergence
tasks with their finetuning data (:mod:`.emergence`). Each reads the hub
dataset real users have, with a documented local path for offline use."""
