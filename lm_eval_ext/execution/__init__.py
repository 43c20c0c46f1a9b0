"""Sandboxed execution of model-written code (see sandbox.py, launcher.py and zygote.py)."""

from .checker import VerdictCache, check_completions, check_samples
from .sandbox import Isolation, Limits, SandboxUnavailable, Verdict, isolation, run_program

__all__ = ["Isolation", "Limits", "SandboxUnavailable", "Verdict", "VerdictCache", "check_completions",
           "check_samples", "isolation", "run_program"]
