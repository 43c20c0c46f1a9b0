"""Functions the emergence task configs name with ``!function utils.X``.

The prompt formats and data loading live in ``lm_eval_ext.tasks.emergence``,
shared with the finetuning data builder (``lm_eval_ext.finetune.train``), so that
finetuned and few-shot evaluation see identical prompts.
"""

from lm_eval_ext.tasks.emergence import (FORMATS, custom_dataset, loss_dataset, loss_process_results,
                                        matthews_corrcoef, nll_per_unit)


# Data: lm-eval calls these with the --metadata (and --model_args) keys as kwargs.
def gsm8k_dataset(**metadata):
    return custom_dataset("gsm8k", **metadata)


def mmlu_dataset(**metadata):
    return custom_dataset("mmlu", **metadata)


def csqa_dataset(**metadata):
    return custom_dataset("csqa", **metadata)


def cola_dataset(**metadata):
    return custom_dataset("cola", **metadata)


gsm8k_text = FORMATS["gsm8k"].text
gsm8k_target = FORMATS["gsm8k"].target
mmlu_text = FORMATS["mmlu"].text
mmlu_target = FORMATS["mmlu"].target
mmlu_choices = FORMATS["mmlu"].choices
csqa_text = FORMATS["csqa"].text
csqa_target = FORMATS["csqa"].target
csqa_choices = FORMATS["csqa"].choices
cola_text = FORMATS["cola"].text
cola_target = FORMATS["cola"].target
cola_choices = FORMATS["cola"].choices
mcc_aggregate = matthews_corrcoef

# Pretraining loss (emergence_loss)
loss_data = loss_dataset
loss_results = loss_process_results
nll_aggregate = nll_per_unit
