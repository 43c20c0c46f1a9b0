"""Finetuning checkpoints for the emergence law (Snell et al. 2024): one run
(:mod:`.train`, ``lm-eval-ext finetune``) and the resumable sweep over
checkpoints x train sizes x seeds that writes the manifest the analysis reads
(:mod:`.sweep`, ``lm-eval-ext finetune-sweep``)."""
