"""Run one model-written program against its tests, isolated by the OS.

The harness side of the sandbox: it picks the strongest isolation this machine
allows (probed once per process, see :func:`isolation`), starts
:mod:`launcher` in a fresh temporary directory with a scrubbed environment,
enforces the wall-clock limit, and always cleans up: the process group is
killed, the temporary directory removed.

Isolation, strongest first:

``namespaces``
    ``unshare`` (util-linux) puts the program in new user, pid, mount, network,
    IPC and UTS namespaces. The supervisor is pid 1 of its namespace, so when it
    exits the kernel kills every process the program started, including
    ``setsid`` + double-forked ones; there is no network at all.
``process-group``
    No namespaces (e.g. a container that forbids them, or Ubuntu's AppArmor
    user-namespace restriction): the supervisor is a child subreaper and kills
    every descendant before it reports; the harness kills the process group.

On top of either, the worker that runs the model's code is confined by
Landlock where the kernel has it (filesystem: read-only Python installation,
read-write temp dir; no TCP; no signals or ptrace outside its domain),
resource limits, no capabilities, and a CPython audit hook. Without Landlock
nothing stops a program from writing files its user may write: the harness
says so with a warning once per process, and ``LM_EVAL_EXT_SANDBOX=strict``
turns that warning into an error.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import select
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings

from . import launcher

log = logging.getLogger(__name__)


def _quiet_candidate_warnings() -> None:
    """run_program compiles every candidate in this process first; what
    CPython says about the model's code while compiling it ("'NoneType'
    object is not callable; perhaps you missed a comma?") would otherwise
    fill the log. One global filter for the "<candidate>" pseudo-module,
    (re)installed when missing (an enclosing ``catch_warnings`` drops it; a
    ``catch_warnings`` per call would race between the checker's threads)."""
    for action, _msg, category, module, _line in warnings.filters:
        if action == "ignore" and category is SyntaxWarning and getattr(module, "pattern", None) == "<candidate>":
            return
    warnings.filterwarnings("ignore", category=SyntaxWarning, module="<candidate>")


_quiet_candidate_warnings()

LAUNCHER = os.path.abspath(launcher.__file__)
_NAMESPACE_FLAGS = ["--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                    "--mount", "--mount-proc", "--net", "--ipc", "--uts"]


class SandboxUnavailable(RuntimeError):
    """The machine offers less isolation than was required."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-program limits. ``timeout`` is wall-clock seconds for load + tests."""

    timeout: float = 10.0
    memory_mb: int = 2048
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 0

    def to_job(self) -> dict:
        d = dataclasses.asdict(self)
        d["cpu_seconds"] = max(1, int(self.timeout) + 1)
        return d


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Outcome of one program. ``status`` is one of passed, failed, timeout,
    sandbox_error (the harness could not run it: not the model's fault)."""

    status: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "status": self.status, "detail": self.detail,
                "seconds": self.seconds}


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What this machine allows, as found by a probe."""

    namespaces: bool
    landlock: str | None
    applied: tuple[str, ...]
    note: str = ""

    @property
    def strong(self) -> bool:
        return self.landlock is not None

    def describe(self) -> str:
        layers = ["namespaces(user,pid,mount,net,ipc,uts)" if self.namespaces else "process-group+subreaper"]
        layers += list(self.applied)
        text = " + ".join(layers)
        if not self.strong:
            text += " [WEAK: no Landlock, the program may write any file its user can write]"
        return text


@functools.lru_cache(maxsize=None)
def _launcher() -> str:
    """The launcher, compiled once per process: a script given as .py is
    compiled on every start (about a third of a short program's time), and
    PYTHONDONTWRITEBYTECODE often keeps any cached .pyc from existing."""
    import atexit
    import py_compile

    cache = tempfile.mkdtemp(prefix="lm_eval_ext_launcher_")
    atexit.register(shutil.rmtree, cache, True)
    try:
        return py_compile.compile(LAUNCHER, cfile=os.path.join(cache, "launcher.pyc"), doraise=True)
    except (py_compile.PyCompileError, OSError) as exc:
        log.debug("launcher not precompiled (%s); running the source", exc)
        return LAUNCHER


@functools.lru_cache(maxsize=None)
def _read_paths() -> tuple[str, ...]:
    """What the worker may read: the Python installation and system libraries."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(p)
    paths.update(["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
                  "/etc/ld.so.cache", "/etc/localtime", "/etc/ssl/openssl.cnf", "/dev/urandom", "/dev/zero"])
    return tuple(sorted(os.path.realpath(p) for p in paths))


def _env() -> dict:
    # Nothing of the harness's environment: no tokens, no HOME, no proxies.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"}


def _mode() -> str:
    mode = os.environ.get("LM_EVAL_EXT_SANDBOX", "auto").strip().lower()
    if mode not in ("auto", "strict", "no-namespaces"):
        raise ValueError("LM_EVAL_EXT_SANDBOX must be auto, strict or no-namespaces, not %r" % mode)
    return mode


def _spawn(job: dict, wrapper: list[str], limits: Limits) -> tuple[dict | None, str]:
    """Start the launcher, feed it the job, wait for its verdict within the limit.

    Returns (verdict or None, the launcher's stderr for diagnosis). Whatever
    happens, the process group is killed and the temporary directory removed.
    """
    workdir = tempfile.mkdtemp(prefix="lm_eval_ext_exec_")
    verdict_r, verdict_w = os.pipe()
    err = tempfile.TemporaryFile()
    proc = None
    verdict = None
    try:
        # Two frames: what the worker needs, then what only the supervisor may
        # see (the tests; pass_fds keeps the verdict descriptor's number).
        job = dict(job)
        tests = {"test": job.pop("test"), "verdict_fd": verdict_w}
        job = dict(job, limits=limits.to_job(), read_paths=list(_read_paths()))
        proc = subprocess.Popen(
            [*wrapper, sys.executable, "-I", "-S", _launcher()],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
            pass_fds=(verdict_w,), cwd=workdir, env=_env(), start_new_session=True,
            close_fds=True,
        )
        os.close(verdict_w)
        verdict_w = -1
        if proc.stdin is not None:
            try:
                for frame in (launcher.encode(job), launcher.encode(tests)):
                    proc.stdin.write(struct.pack(">I", len(frame)) + frame)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        # Grace on top of the program's own limit: interpreter start-up and
        # namespace creation are not the program's time.
        deadline = time.monotonic() + limits.timeout + 5.0
        data = b""
        while time.monotonic() < deadline and len(data) < 1 << 20:
            ready, _, _ = select.select([verdict_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(verdict_r, 65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
                break  # a whole verdict: no need to wait for the teardown
        if len(data) >= 4:
            (n,) = struct.unpack(">I", data[:4])
            try:
                verdict = launcher.decode(data[4:4 + n])
            except (ValueError, TypeError, UnicodeDecodeError):
                verdict = None
    finally:
        if proc is not None:
            _kill_group(proc)
        err.seek(0)
        diag = err.read(4000).decode("utf-8", "replace")
        err.close()
        os.close(verdict_r)
        if verdict_w >= 0:
            os.close(verdict_w)
        shutil.rmtree(workdir, ignore_errors=True)
    return (verdict if isinstance(verdict, dict) else None), diag


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@functools.lru_cache(maxsize=None)
def isolation() -> Isolation:
    """Probe, once per process, the strongest isolation that works here."""
    mode = _mode()
    unshare = shutil.which("unshare")
    notes = []
    candidates = []
    if unshare and mode != "no-namespaces":
        candidates.append((True, [unshare, *_NAMESPACE_FLAGS, "--"]))
    elif not unshare:
        notes.append("`unshare` (util-linux) not found")
    candidates.append((False, []))
    for namespaced, wrapper in candidates:
        verdict, _ = _spawn({"probe": True, "prompt": "", "completion": "", "test": "", "entry_point": "f"},
                            wrapper, Limits(timeout=10.0))
        if verdict and verdict.get("status") == "probe":
            if namespaced and verdict.get("pid_in_sandbox") != 1:
                notes.append("namespaces did not take effect")
                continue
            applied = tuple(verdict.get("applied", ()))
            landlock = next((a for a in applied if a.startswith("landlock")), None)
            iso = Isolation(namespaces=namespaced, landlock=landlock, applied=applied, note="; ".join(notes))
            _WRAPPER[:] = wrapper
            if not iso.strong:
                msg = "code execution sandbox is weak on this machine: " + iso.describe()
                if mode == "strict":
                    raise SandboxUnavailable(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
            log.info("code execution sandbox: %s", iso.describe())
            return iso
        notes.append(("user namespaces unavailable" if namespaced else "plain launcher failed")
                     + (": %s" % verdict.get("detail") if verdict else ""))
    raise SandboxUnavailable("cannot start the execution sandbox: " + "; ".join(notes))


_WRAPPER: list[str] = []


def run_program(prompt: str, completion: str, test: str, entry_point: str,
                limits: Limits | None = None) -> Verdict:
    """Run ``prompt + completion`` in the sandbox and ``check(entry_point)`` from
    ``test`` against it. Never raises for anything the program does."""
    limits = limits or Limits()
    # Small models write a lot of code that does not even parse. Compiling
    # runs none of it (CPython bounds nesting and constant folding), so such
    # programs fail here without the cost of a sandbox.
    t0 = time.monotonic()
    _quiet_candidate_warnings()
    try:
        compile(prompt + completion, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return Verdict("failed", ("program did not load: %s: %s" % (type(exc).__name__, exc))[:500],
                       round(time.monotonic() - t0, 4))
    isolation()
    job = {"prompt": prompt, "completion": completion, "test": test, "entry_point": entry_point}
    t0 = time.monotonic()
    verdict, diag = _spawn(job, list(_WRAPPER), limits)
    elapsed = round(time.monotonic() - t0, 4)
    if verdict is None:
        if elapsed >= limits.timeout:
            return Verdict("timeout", "no verdict within %.1fs" % limits.timeout, elapsed)
        # The supervisor died without a verdict: the program killed it (only
        # possible without Landlock signal scoping) or the launcher broke.
        if diag.strip():
            log.warning("sandbox launcher ended without a verdict: %s", diag.strip()[-1000:])
        return Verdict("failed", "the sandbox supervisor ended without a verdict", elapsed)
    status = verdict.get("status")
    if status not in ("passed", "failed", "timeout", "sandbox_error"):
        return Verdict("sandbox_error", "unexpected launcher reply", elapsed)
    return Verdict(status, str(verdict.get("detail", ""))[:500], float(verdict.get("seconds", elapsed)))
