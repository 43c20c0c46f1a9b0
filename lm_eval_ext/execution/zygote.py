"""Zygotes: sandboxes started and confined once, forking a fresh child per program.

A per-program launch pays, for every program, ``unshare``, an interpreter's
start-up, the launcher's imports (``ctypes`` alone is a few milliseconds),
the imports of the modules the tests and the solution use, and a few hundred
Landlock rules. A zygote pays them once: it is the launcher
(:func:`launcher.zygote`) started by the same ``unshare`` command (new user,
pid, mount, network, IPC and UTS namespaces), in the same scrubbed
environment, with the standard library modules HumanEval-style code imports
(:data:`PRELOAD`) already imported, the Landlock read rules already built (a
ruleset descriptor, not enforced on the zygote itself), the seccomp program
assembled and the interpreter's lazy state (the compiler's) warmed up. It
never runs a program, and never reads one: for each program it forks the
supervisor into a fresh pid namespace (pid 1 there), which

- enters fresh mount, user, IPC and UTS namespaces, mounts its own ``/proc``
  and its own tmpfs (bounded by the program's ``Limits``) over the zygote's
  one empty directory: other programs' tmpfs live in other mount namespaces,
  invisible. The network namespace is the zygote's (no interface up: no
  network), held by one program at a time, in which a program has no
  capability and, under the seccomp filter, cannot even make a socket: it
  can leave nothing behind (see ``launcher``'s zygote notes; without the
  filter, on other architectures, each program gets its own);
- runs :func:`launcher.supervise` as a per-program launcher does: the job
  read from the harness's pipe, the worker forked, the tests read only then,
  the worker confined by the program's rlimits, no-new-privs, no
  capabilities, Landlock (the zygote's read layer plus a layer of its own
  that allows writes only to its tmpfs and /dev/null and scopes signals and
  abstract sockets to its own domain), seccomp, the audit hook and the thread
  cap; the same verdict protocol on the same kind of pipe, against the same
  deadline.

At the end the harness has the zygote kill the supervisor (pid 1: the kernel
kills every process of the program) and waits until it is reaped, so nothing
of a program outlives its verdict, and the next program is a fresh fork of a
zygote that never ran untrusted code. Nothing secret is in the zygote: the
tests reach the supervisor on a pipe the zygote only passes on, and
``random`` is reseeded in every forked process (a worker cannot predict its
supervisor's draws).

One zygote per concurrent checker thread (a pool, keyed by the ``unshare``
command and ``Limits.packages``); a zygote that dies is replaced. A zygote is
used only where its probe shows every layer the per-program probe shows
(:func:`sandbox.isolation`); where it cannot start (no namespaces, a kernel
that refuses nested user namespaces, ...) programs get their own ``unshare``
launch, and a zygote that breaks mid-program has that program rerun that
way: its death is never the program's verdict. ``LM_EVAL_EXT_ZYGOTE=off``
turns zygotes off.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple

from . import launcher

log = logging.getLogger(__name__)

# The standard library modules HumanEval's prompts, solutions and tests import
# (and those that small models' solutions commonly do), imported once by each
# zygote. No module the audit hook refuses.
PRELOAD = ("math", "re", "collections", "itertools", "functools", "heapq", "string", "typing", "hashlib",
           "random", "statistics", "bisect", "fractions", "decimal", "operator", "copy")
_START_TIMEOUT = 30.0   # seconds for a zygote to start (a loaded machine)
_END_TIMEOUT = 5.0      # for a program's processes to be gone once killed
_MAX_START_FAILURES = 3  # in a row, per kind of zygote: then the per-program path for good
_MAX_ZYGOTES = 64       # per kind; more concurrent programs run the per-program way
_MAX_IDLE = max(4, 2 * len(os.sched_getaffinity(0)))  # per kind; more are stopped once idle
# The probe's job (sandbox.isolation's and each zygote's): the launcher reports
# the layers it applied instead of running a program. Never mutated: its
# users (sandbox._spawn, Zygote.run) copy it.
PROBE_JOB = {"probe": True, "prompt": "", "completion": "", "test": "", "entry_point": "f"}


class ZygoteError(RuntimeError):
    """A zygote could not start, or broke: never a program's fault."""


class Setup(NamedTuple):
    """What a zygote is started with, as the harness (``sandbox``) has it."""

    wrapper: tuple[str, ...]       # the ``unshare`` command
    packages: tuple[str, ...]      # Limits.packages: the kind of zygote, with wrapper
    launcher: str                  # the compiled launcher
    cache_dir: str                 # the harness's private directory: the zygotes' go inside
    env: dict                      # the scrubbed environment
    read_paths: str                # the packed Landlock read rules (sandbox._packed_read_paths)
    sys_path: tuple[str, ...]      # the import path of ``packages``
    grace: float                   # seconds on top of a program's limit
    probe_limits: object           # the Limits of the probe (sandbox.isolation's)


def frames(job: dict, tests: dict) -> bytes:
    """The launcher's two frames: what the worker needs, then what only the supervisor may see."""
    return b"".join(struct.pack(">I", len(f)) + f for f in (launcher.encode(job), launcher.encode(tests)))


def exchange(stdin_fd: int, close_stdin, verdict_r: int, data_out: bytes, deadline: float):
    """Write ``data_out`` (the frames) to a launcher's stdin (``close_stdin``
    closes it once written) while waiting for its verdict on ``verdict_r``,
    both against ``deadline``. Returns the decoded verdict, or None. Used
    for a per-program launcher and a zygote's child alike."""
    pending = memoryview(data_out)
    os.set_blocking(stdin_fd, False)
    data = b""
    while len(data) < 1 << 20:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, writable, _ = select.select([verdict_r], [stdin_fd] if pending else [], [], remaining)
        if writable:
            try:
                pending = pending[os.write(stdin_fd, pending[:1 << 16]):]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                pending = pending[:0]
            if not pending:
                close_stdin()
        if not ready:
            continue
        chunk = os.read(verdict_r, 65536)
        if not chunk:
            break
        data += chunk
        if len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            break  # a whole verdict: no need to wait for the teardown
    if len(data) >= 4:
        (n,) = struct.unpack(">I", data[:4])
        try:
            return launcher.decode(data[4:4 + n])
        except (ValueError, TypeError, UnicodeDecodeError):
            return None
    return None


def enabled() -> bool:
    return os.environ.get("LM_EVAL_EXT_ZYGOTE", "auto").strip().lower() not in ("off", "0", "no", "false")


class Zygote:
    """One zygote process and its control socket. Used by one thread at a time."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.broken = False
        self.proc = None
        self.sock = None
        self.err = None
        self.program_err = None
        self.dir = tempfile.mkdtemp(prefix="zygote_", dir=setup.cache_dir)
        try:
            os.mkdir(os.path.join(self.dir, launcher.ZYGOTE_WORKDIR), 0o700)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.sock = ours
            self.err = tempfile.TemporaryFile()
            self.program_err = tempfile.TemporaryFile()  # each supervisor's stderr, emptied per program
            try:
                self.proc = subprocess.Popen(
                    [*setup.wrapper, sys.executable, "-I", "-S", setup.launcher, "--zygote"],
                    stdin=theirs, stdout=subprocess.DEVNULL, stderr=self.err, cwd=self.dir, env=setup.env,
                    start_new_session=True, close_fds=True)
            finally:
                theirs.close()
            cfg = {"read_paths": setup.read_paths, "sys_path": list(setup.sys_path),
                   "preload": list(PRELOAD)}
            self.sock.send(launcher.encode(cfg))
            hello = self._recv(time.monotonic() + _START_TIMEOUT)
            try:
                hello = launcher.decode(hello)
            except (ValueError, TypeError, UnicodeDecodeError):
                hello = None
            if not isinstance(hello, dict) or hello.get("ready") is not True:
                raise ZygoteError("the zygote did not start: %s" % (
                    hello.get("note") if isinstance(hello, dict) else self.diagnostics() or "no reply"))
            if setup.wrapper and hello.get("pid") != 1:
                raise ZygoteError("the zygote is not in its own pid namespace")
            if hello.get("note"):
                log.info("code execution sandbox: zygote %d: %s", self.proc.pid, hello["note"])
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- wire
    def _recv(self, deadline: float) -> bytes:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZygoteError("the zygote did not answer in time")
            if select.select([self.sock], [], [], remaining)[0]:
                break
        try:
            data = self.sock.recv(1 << 16)
        except OSError as exc:
            raise ZygoteError("the zygote's socket failed: %s" % exc) from None
        if not data:
            raise ZygoteError("the zygote ended")
        return data

    def _end(self) -> bool:
        """Kill the program in flight and wait until all its processes are gone."""
        try:
            self.sock.send(b"end")
            return self._recv(time.monotonic() + _END_TIMEOUT) == b"ended"
        except (OSError, ZygoteError):
            return False

    def alive(self) -> bool:
        return not self.broken and self.proc is not None and self.proc.poll() is None

    def diagnostics(self) -> str:
        try:
            self.err.seek(0)
            return self.err.read(4000).decode("utf-8", "replace").strip()
        except (OSError, ValueError, AttributeError):
            return ""

    # ----------------------------------------------------------------- run
    def run(self, job: dict, limits) -> tuple[dict | None, str, None]:
        """Run one program: (verdict or None, the supervisor's stderr, None),
        as ``sandbox._spawn`` returns (there is no host directory to remove:
        the program's tmpfs vanished with its mount namespace). Raises
        ZygoteError where the zygote, not the program, failed."""
        deadline = time.monotonic() + limits.timeout + self.setup.grace
        job = dict(job)
        tests = {"test": job.pop("test"), "verdict_fd": launcher.ZYGOTE_VERDICT_FD}
        job.update(limits=limits.to_job(), sys_path=list(self.setup.sys_path))
        data_out = frames(job, tests)
        started = False
        job_w = verdict_r = -1
        err = self.program_err
        err.seek(0)
        err.truncate()
        try:
            theirs = []
            try:
                job_r, job_w = os.pipe()
                theirs.append(job_r)
                verdict_r, verdict_w = os.pipe()
                theirs.append(verdict_w)
                socket.send_fds(self.sock, [b"run"], [job_r, verdict_w, err.fileno()])
            except OSError as exc:
                raise ZygoteError("cannot hand the program to the zygote: %s" % exc) from None
            finally:
                for fd in theirs:
                    os.close(fd)
            reply = self._recv(deadline)
            if not reply.startswith(b"S "):
                raise ZygoteError("the zygote could not start a program: %s"
                                  % reply[2:].decode("utf-8", "replace"))
            started = True

            def close_job():
                nonlocal job_w
                if job_w >= 0:
                    os.close(job_w)
                    job_w = -1

            verdict = exchange(job_w, close_job, verdict_r, data_out, deadline)
        except ZygoteError:
            self.broken = True
            raise
        finally:
            if job_w >= 0:
                os.close(job_w)
            if verdict_r >= 0:
                os.close(verdict_r)
            if started and not self._end():
                self.broken = True
            err.seek(0)
            diag = err.read(4000).decode("utf-8", "replace")
        if isinstance(verdict, dict) and verdict.get("status") == "zygote_error":
            self.broken = True
            raise ZygoteError("the zygote's child could not isolate the program: %s" % verdict.get("detail"))
        if not isinstance(verdict, dict):
            verdict = None
            if self.broken or not self.alive():
                # The supervisor died with its zygote (killed from outside):
                # nothing to say about the program.
                self.broken = True
                raise ZygoteError("the zygote ended during the program")
        return verdict, diag, None

    def close(self) -> None:
        """Kill the zygote and every program it holds; remove its directory."""
        self.broken = True
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("zygote %d not reaped 5 s after SIGKILL", self.proc.pid)
        for f in (self.err, self.program_err):
            if f is not None:
                f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class _Pool:
    """Idle zygotes by kind (the ``unshare`` command, ``Limits.packages``)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.idle: dict[tuple, list[Zygote]] = {}
        self.count: dict[tuple, int] = {}
        self.failures: dict[tuple, int] = {}
        self.disabled: dict[tuple, str] = {}
        self.every: set[Zygote] = set()
        self.stats = {"started": 0, "programs": 0, "fallbacks": 0}

    def acquire(self, setup: Setup, expected: tuple[str, ...]) -> Zygote | None:
        key = (setup.wrapper, setup.packages)
        dead = []
        try:
            with self.lock:
                if key in self.disabled:
                    return None
                idle = self.idle.setdefault(key, [])
                while idle:
                    z = idle.pop()
                    if z.alive():
                        return z
                    dead.append(z)
                if self.count.get(key, 0) >= _MAX_ZYGOTES:
                    return None
                self.count[key] = self.count.get(key, 0) + 1
        finally:
            for z in dead:
                self._discard(z, key)
        try:
            z = Zygote(setup)
        except Exception as exc:  # noqa: BLE001 - never the checker's crash
            self._failed(key, exc)
            return None
        try:
            self._check(z, expected)
        except Exception as exc:  # noqa: BLE001
            z.close()
            self._failed(key, exc)
            return None
        with self.lock:
            self.every.add(z)
            self.failures[key] = 0
            self.stats["started"] += 1
        return z

    def _check(self, z: Zygote, expected: tuple[str, ...]) -> None:
        """The zygote's children must be confined by every layer a per-program launch gets."""
        verdict, diag, _ = z.run(PROBE_JOB, z.setup.probe_limits)
        if not verdict or verdict.get("status") != "probe" or verdict.get("pid_in_sandbox") != 1:
            raise ZygoteError("the zygote's probe failed: %s" % ((verdict or {}).get("detail") or diag or "no verdict"))
        missing = set(expected) - set(verdict.get("applied", ()))
        if missing:
            raise ZygoteError("the zygote's children would lack %s" % sorted(missing))
        # And a program that uses its directory, as programs do, passes.
        job = {"prompt": "def f():\n", "entry_point": "f",
               "completion": ("    with open('probe', 'w') as out:\n        out.write('ok')\n"
                              "    return open('probe').read()\n"),
               "test": "def check(candidate):\n    assert candidate() == 'ok'\n"}
        verdict, diag, _ = z.run(job, z.setup.probe_limits)
        if not verdict or verdict.get("status") != "passed":
            raise ZygoteError("a program fails in the zygote's child: %s"
                              % ((verdict or {}).get("detail") or diag or "no verdict"))

    def _failed(self, key: tuple, exc: Exception) -> None:
        with self.lock:
            self.count[key] = self.count.get(key, 1) - 1
            self.failures[key] = self.failures.get(key, 0) + 1
            if self.failures[key] >= _MAX_START_FAILURES:
                self.disabled[key] = str(exc)
        if key in self.disabled:
            log.warning("code execution sandbox: no zygote (%s); every program starts its own sandbox", exc)
        else:
            log.info("code execution sandbox: a zygote failed to start (%s)", exc)

    def release(self, z: Zygote, key: tuple) -> None:
        if z.alive():
            with self.lock:
                idle = self.idle.setdefault(key, [])
                if z in self.every and len(idle) < _MAX_IDLE:
                    idle.append(z)
                    return
        self._discard(z, key)

    def _discard(self, z: Zygote, key: tuple) -> None:
        """Close a zygote that died or broke; the next acquire starts another."""
        with self.lock:
            if z not in self.every:
                return
            self.every.discard(z)
            self.count[key] = max(0, self.count.get(key, 1) - 1)
            if z in self.idle.get(key, ()):
                self.idle[key].remove(z)
        z.close()

    def count_run(self, what: str) -> None:
        with self.lock:
            self.stats[what] += 1

    def close_all(self) -> None:
        with self.lock:
            every = list(self.every)
            self.every.clear()
            self.idle.clear()
            self.count.clear()
        for z in every:
            z.close()

    def forget(self) -> None:
        """In a forked child of the harness: drop (without killing) the parent's zygotes."""
        for z in list(self.every):
            try:
                z.sock.close()
            except OSError:
                pass
        self.__init__()


_POOL = _Pool()


def run(job: dict, limits, expected: tuple[str, ...], setup: Setup):
    """Run one program in a zygote's child: what ``sandbox._spawn`` returns,
    or None where no zygote could take it (the caller then runs it the
    per-program way). ``expected``: the layers a per-program launch applies
    (a zygote whose children lack one is not used)."""
    key = (setup.wrapper, setup.packages)
    pool = _POOL
    z = pool.acquire(setup, expected)
    if z is None:
        pool.count_run("fallbacks")
        return None
    try:
        ran = z.run(job, limits)
        pool.count_run("programs")
        return ran
    except ZygoteError as exc:
        log.info("code execution sandbox: %s; the program runs in its own sandbox", exc)
        pool.count_run("fallbacks")
        return None
    finally:
        pool.release(z, key)


def stats() -> dict:
    """Counts for this process: zygotes started, programs run in a zygote's
    child, programs that ran the per-program way (no zygote, or one broke),
    and the kinds of zygote given up on, with why."""
    pool = _POOL
    with pool.lock:
        out = dict(pool.stats)
        out["live"] = len(pool.every)
        out["disabled"] = {"packages=%s" % list(k[1]): why for k, why in pool.disabled.items()}
    return out


def close_all() -> None:
    """Stop every zygote of this process (they are started again when needed)."""
    _POOL.close_all()


atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _POOL.forget())
