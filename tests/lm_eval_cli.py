"""Running the real ``lm_eval`` CLI (and other commands) from tests, offline."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def offline_env(**extra: str) -> dict:
    """The environment for a subprocess: nothing from the hub, one torch
    thread (two processes share the 2-core CI machine); ``extra`` overrides."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def run_parallel(cmds: list[list[str]], cwd: Path, *, width: int = 2, env: dict | None = None,
                 timeout: float = 600) -> None:
    """Run the commands ``width`` at a time and assert each succeeded (most of
    an lm_eval call is single-threaded start-up, so two use both cores)."""
    env = offline_env() if env is None else env
    pending = list(cmds)
    running: list[tuple[subprocess.Popen, list[str]]] = []
    while pending or running:
        while pending and len(running) < width:
            cmd = pending.pop(0)
            running.append((subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True), cmd))
        proc, cmd = running.pop(0)
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{cmd}\n{err[-4000:]}"


def sigkill_when(cmd: list[str], state_file: Path, ready, *, env: dict, cwd: Path | None = None,
                 timeout: float = 300, poll: float = 0.01) -> None:
    """Start ``cmd`` in a process group of its own and SIGKILL the whole group
    (an engine's helper processes too) as soon as its PassUntil state file
    shows ``ready(state)``; fail if it finishes, exits or makes no such
    progress first."""
    import json
    import signal
    import time

    import pytest

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if state_file.exists():
                st = json.loads(state_file.read_text())
                if st["finished"]:
                    pytest.fail("the run finished before it could be killed: give it more work")
                if ready(st):
                    return
            if proc.poll() is not None:
                pytest.fail(f"the run exited with {proc.returncode} before it was killed")
            time.sleep(poll)
        pytest.fail("the run made no progress to kill")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
