"""The emergence lab: one command from nothing to a tested prediction.

``python -m lm_eval_ext.lab --output_path DIR`` trains a ladder of tiny transformers
on synthetic algorithmic tasks (:mod:`.synthetic`, :mod:`.ladder`), scores
them through lm-eval on PassUntil tasks (``task_configs/lab``,
:mod:`.evaluate`), predicts the largest model's PU from the smaller ones
before training it, then trains it and compares (:mod:`.pipeline`), and
writes a Markdown report with plots (:mod:`.report`). ``--finetune`` adds
the finetuning leg (:mod:`.finetune_leg`): the smaller checkpoints finetuned
on the length-generalisation task predict its few-shot emergence point
(Snell et al. 2024), also before the largest model is trained.
"""

from .pipeline import LabConfig, quick_config, run_lab

__all__ = ["LabConfig", "quick_config", "run_lab"]
