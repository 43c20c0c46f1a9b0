"""Output hygiene: no progress bars in redirected output, upstream warnings
that repeat per task load shown once, output files with the user's umask."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lm_eval_ext.conventions import console, files
from lm_eval_ext.conventions.files import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with stdout/stderr on pipes (not TTYs),
    decoded as bytes are (``text=True`` would turn '\\r' into '\\n')."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          cwd=ROOT, env=env, timeout=120)
    proc.stdout, proc.stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    return proc


# ---------------------------------------------------------------- progress bars

CHECK = """
    import sys
    import lm_eval_ext.conventions.console as console
    if sys.argv[1:] == ["tty"]:  # the control: bars as on a terminal
        console.quiet = lambda stream=None: False
    from lm_eval_ext.execution import check_completions
    p = {"task_id": "t/add", "prompt": "def add(a, b):\\n", "entry_point": "add",
         "test": "def check(candidate):\\n    assert candidate(2, 3) == 5\\n"}
    v = check_completions([(p, "    return a + b\\n"), (p, "    return a - b\\n")], progress="checking")
    print([x.passed for x in v])
"""


def test_checker_bar_is_silent_when_stderr_is_not_a_terminal():
    proc = _run(CHECK)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[True, False]"
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr, repr(proc.stderr)
    # the control: the same run draws its bar when stderr counts as a terminal
    tty = _run(CHECK, "tty")
    assert tty.returncode == 0, tty.stderr
    assert "\r" in tty.stderr and "checking" in tty.stderr


def test_quiet_follows_the_stream():
    class Term(io.StringIO):
        def isatty(self):
            return True

    assert console.quiet(io.StringIO())
    assert not console.quiet(Term())
    closed = io.StringIO()
    closed.close()
    assert console.quiet(closed)
    bar = console.progress_bar(range(3), enabled=True)
    if console.quiet():  # pytest captures stderr: not a terminal
        assert bar.disable
    assert list(bar) == [0, 1, 2]
    assert console.progress_bar(range(2), enabled=False).disable
    assert console.progress_bar(range(2), disable=True).disable


def test_lab_training_quiet_and_model_dir_readable(tmp_path):
    """A ladder rung trained with its bar on, stderr on a pipe, umask 022:
    no carriage return (its own bar, transformers' 'Writing model shards'),
    and the model directory and every file in it readable by group/other."""
    proc = _run(f"""
        import os
        os.umask(0o022)
        from pathlib import Path
        from lm_eval_ext.conventions.console import quiet_upstream
        from lm_eval_ext.lab.ladder import Size, TrainSettings, train_model
        from lm_eval_ext.lab.synthetic import TaskSpec
        quiet_upstream()
        facts = train_model(Path({str(tmp_path)!r}), Size("t", 8, 1, 2), 0,
                            TrainSettings(steps=3, batch_size=4, warmup=1, checkpoint_every=2,
                                          spec=TaskSpec(n_test=4)), progress=True)
        print(facts["model"])
    """)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr, repr(proc.stderr)
    model = Path(proc.stdout.strip().splitlines()[-1])
    assert model.is_dir() and model.parent == tmp_path
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
    found = list(model.iterdir())
    assert any(f.name == "model.safetensors" for f in found)
    for f in found:
        assert stat.S_IMODE(f.stat().st_mode) == (0o755 if f.is_dir() else 0o644), f


# ---------------------------------------------------------------- file modes

@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_umask_is_read_without_changing_it(umask_022, monkeypatch):
    assert files.umask() == 0o022
    assert os.umask(0o022) == 0o022  # unchanged
    monkeypatch.setattr(files, "_umask_from_proc", lambda: None)  # the non-Linux fallback
    assert files.umask() == 0o022
    assert os.umask(0o022) == 0o022


def test_atomic_writes_follow_the_umask(tmp_path, umask_022):
    write_json_atomic(tmp_path / "results.json", {"a": 1})
    write_text_atomic(tmp_path / "report.md", "# r\n")
    for name in ("results.json", "report.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}
    os.umask(0o027)
    write_text_atomic(tmp_path / "report.md", "# r2\n")
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]  # no temp files left


def test_apply_umask_tree(tmp_path, umask_022):
    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    (d / "sub").mkdir(mode=0o700)
    fd, f = tempfile.mkstemp(dir=d / "sub")
    os.close(fd)
    (d / "link").symlink_to("/etc/hostname")
    files.apply_umask(d, tree=True)
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
    assert stat.S_IMODE((d / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644


# ---------------------------------------------------------------- warnings

def _capture(logger: logging.Logger) -> list[str]:
    seen: list[str] = []

    class H(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger.addHandler(H())
    logger.propagate = False
    return seen


def test_once_filter_lets_one_copy_through():
    log = logging.getLogger("tests.output_hygiene.once")
    seen = _capture(log)
    f = console.OnceFilter([console.METADATA_HINT])
    log.addFilter(f)
    try:
        for task in ("lab_add", "lab_count", "lab_add"):
            log.warning(f"{task}: {console.METADATA_HINT} in console (as json string) or to the TaskManager.")
        log.warning("something else")
        log.warning("something else")
    finally:
        log.removeFilter(f)
    assert len([m for m in seen if console.METADATA_HINT in m]) == 1
    assert seen[0].startswith("lab_add: ") and seen[0].endswith("(shown once)")
    assert seen[1:] == ["something else", "something else"]


def test_quiet_upstream_installs_the_filter_once():
    console.quiet_upstream()
    console.quiet_upstream()
    for name, hint in (("lm_eval.api.task", console.METADATA_HINT), ("lm_eval.evaluator", console.GEN_KWARGS_HINT)):
        flt = [f for f in logging.getLogger(name).filters if isinstance(f, console.OnceFilter)]
        assert len(flt) == 1 and hint in flt[0].patterns, name


def test_upstream_hints_match_lm_eval():
    """The patterns are lm-eval 0.4.13's messages: a reworded upstream
    message would silently make the filter a no-op."""
    import inspect

    import lm_eval.api.task as task_mod
    import lm_eval.evaluator as ev

    assert console.METADATA_HINT in inspect.getsource(task_mod)
    assert console.GEN_KWARGS_HINT in inspect.getsource(ev)


def test_model_code_compile_warnings_stay_out_of_the_log():
    """run_program compiles each candidate in this process: CPython's
    SyntaxWarnings about the model's code are dropped, others are not."""
    import warnings

    from lm_eval_ext.execution import run_program

    with warnings.catch_warnings(record=True) as got:
        warnings.resetwarnings()  # as inside any catch_warnings block: the filter must come back
        warnings.simplefilter("default")
        v = run_program("def f():\n", "    return None(1)\n", "def check(c):\n    c()\n", "f")
        compile("x = None(1)\n", "<elsewhere>", "exec")  # the control
    assert v.status == "failed"
    assert [w.filename for w in got if w.category is SyntaxWarning] == ["<elsewhere>"]


def test_lm_eval_model_request_bars_are_off_when_quiet(monkeypatch):
    """`--model hf --no_shared_prefix`: lm-eval's hf backend draws its own bar
    over the requests of every call; off a terminal it is silenced like the rest."""
    import lm_eval.models.huggingface as hf

    from lm_eval_ext.conventions import console

    monkeypatch.setattr(console, "quiet", lambda *a, **k: True)
    original = hf.tqdm
    with console.quiet_task_bars():
        bar = hf.tqdm(total=3, desc="Running generate_until requests")
        assert bar.disable
        bar.close()
    assert hf.tqdm is original
    monkeypatch.setattr(console, "quiet", lambda *a, **k: False)
    with console.quiet_task_bars():
        assert hf.tqdm is original  # on a terminal, lm-eval's bars are left alone
