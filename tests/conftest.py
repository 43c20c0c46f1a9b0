"""Shared test setup: offline by construction, and a tiny local model."""

import os

# Nothing may come from the Hugging Face hub in tests.
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.tiny_model import tiny_model_dir  # noqa: E402,F401  (session fixture)
