"""The trusted half of one sandboxed execution: a supervisor and its worker.

Run as ``python -I -S launcher.py`` by :mod:`lm_eval_ext.execution.sandbox`,
inside whatever OS isolation the machine allows (namespaces via ``unshare``).
It reads one job (JSON) on stdin and writes one verdict (JSON) on the descriptor the job names.

Why two processes. A program that runs in the same process as its tests can
forge any verdict: exit with status 0 before the tests, patch the checker, or
return an object whose ``__eq__`` is always true. So the model's code runs in a
*worker*, and the tests run here, in the *supervisor*, which calls the
candidate function through a pipe. Arguments and return values cross as plain
data (see ``encode``/``decode``: exact builtin types only), so the comparisons
in the tests are made by trusted code on trusted values. The worker never holds
the verdict channel (its descriptor is closed before any untrusted code runs), cannot
signal or ptrace the supervisor (Landlock domain and signal scoping, dropped
capabilities, a non-dumpable supervisor), and whatever it prints goes to
/dev/null. A verdict of PASS therefore means: ``check(candidate)`` from the
problem's test code returned normally in the supervisor.

What the worker is confined by, applied in this order before the model's code
runs: resource limits (CPU, address space, file size, open files, processes),
no-new-privs and an empty capability set, a Landlock ruleset (read-only access
to the Python installation, read-write to its own temporary directory only,
no TCP, no signals or abstract sockets outside its domain) where the kernel
has Landlock, a seccomp filter (no process creation, sockets, metadata
changes, ptrace or io_uring; see ``apply_seccomp``), and a CPython audit hook that refuses process creation, signals,
ctypes, sockets, and writes outside the temporary directory. The audit hook
is a convenience layer (clear errors, and a guard where the kernel offers
nothing better); the kernel mechanisms are the sandbox.

What it does not guard against: kernel exploits; side channels; a test that
mutates its arguments and inspects them afterwards (arguments are copies);
candidate functions that take or return objects other than builtin data
(functions, class instances): those calls fail, and the sample FAILS.

The tests reach the supervisor as a second frame on stdin, read only after
the worker has been forked, so the worker's memory never holds them.

This file must stay importable with ``-I -S`` (stdlib only, no package
imports) because it is executed as a standalone script (compiled once per
harness process, see ``sandbox._launcher``).
"""

import os
import select
import struct
import sys
import time

# ---------------------------------------------------------------- value codec
# Only exact builtin types cross the pipe; subclasses (which could override
# __eq__) and arbitrary objects are refused. A small tagged binary format,
# not json or pickle: pickle would run the sender's code in the receiver, and
# json's import alone (it pulls in `re`) costs more than a whole test run.
# The decoder checks every length against the bytes actually there.
_MAX_DEPTH = 200
_MAX_MESSAGE = 64 * 1024 * 1024
_U32 = struct.Struct(">I")
_F64 = struct.Struct(">d")
_CONTAINERS = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


class Unencodable(TypeError):
    pass


def encode(value):
    out = []
    _enc(value, out, 0)
    return b"".join(out)


def _enc(x, out, depth):
    if depth > _MAX_DEPTH:
        raise Unencodable("value nested too deeply")
    t = type(x)
    if x is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if x else b"F")
    elif t is int:
        data = x.to_bytes((x.bit_length() + 8) // 8, "big", signed=True)
        out += (b"i", _U32.pack(len(data)), data)
    elif t is float:
        out += (b"f", _F64.pack(x))
    elif t is str:
        data = x.encode("utf-8", "surrogatepass")
        out += (b"s", _U32.pack(len(data)), data)
    elif t is bytes:
        out += (b"b", _U32.pack(len(x)), x)
    elif t is complex:
        out += (b"c", _F64.pack(x.real), _F64.pack(x.imag))
    elif t in _CONTAINERS:
        out += (_CONTAINERS[t], _U32.pack(len(x)))
        for v in x:
            _enc(v, out, depth + 1)
    elif t is dict:
        out += (b"d", _U32.pack(len(x)))
        for k, v in x.items():
            _enc(k, out, depth + 1)
            _enc(v, out, depth + 1)
    else:
        raise Unencodable("cannot pass a %s across the sandbox boundary" % t.__name__)


def decode(data):
    value, pos = _dec(data, 0, 0)
    if pos != len(data):
        raise ValueError("trailing bytes")
    return value


def _take(data, pos, n):
    if n < 0 or pos + n > len(data):
        raise ValueError("truncated value")
    return data[pos:pos + n], pos + n


def _dec(data, pos, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("value nested too deeply")
    tag, pos = _take(data, pos, 1)
    if tag == b"N":
        return None, pos
    if tag == b"T":
        return True, pos
    if tag == b"F":
        return False, pos
    if tag == b"f":
        raw, pos = _take(data, pos, 8)
        return _F64.unpack(raw)[0], pos
    if tag == b"c":
        raw, pos = _take(data, pos, 16)
        return complex(_F64.unpack(raw[:8])[0], _F64.unpack(raw[8:])[0]), pos
    raw, pos = _take(data, pos, 4)
    (n,) = _U32.unpack(raw)
    if tag in (b"i", b"s", b"b"):
        raw, pos = _take(data, pos, n)
        if tag == b"i":
            return int.from_bytes(raw, "big", signed=True), pos
        return (raw.decode("utf-8", "surrogatepass") if tag == b"s" else raw), pos
    if n > len(data) - pos:  # every item takes at least one byte
        raise ValueError("truncated value")
    if tag == b"d":
        out = {}
        for _ in range(n):
            k, pos = _dec(data, pos, depth + 1)
            v, pos = _dec(data, pos, depth + 1)
            out[k] = v  # an unhashable key raises TypeError: a malformed message
        return out, pos
    items = []
    for _ in range(n):
        v, pos = _dec(data, pos, depth + 1)
        items.append(v)
    if tag == b"l":
        return items, pos
    if tag == b"t":
        return tuple(items), pos
    if tag == b"S":
        return set(items), pos
    if tag == b"Z":
        return frozenset(items), pos
    raise ValueError("malformed value")


# ------------------------------------------------------------------ framing
def _write_msg(fd, obj):
    data = encode(obj)
    buf = _U32.pack(len(data)) + data
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def _read_exact(fd, n, deadline):
    chunks, got = [], 0
    while got < n:
        if deadline is not None:  # None: block (the worker waits for calls)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("program exceeded its time limit")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("worker ended")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_msg(fd, deadline):
    (n,) = _U32.unpack(_read_exact(fd, 4, deadline))
    if n > _MAX_MESSAGE:
        raise ValueError("message too large")
    return decode(_read_exact(fd, n, deadline))


# ------------------------------------------------------------ kernel helpers
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38

# Landlock syscall numbers are the same on every architecture (444-446).
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}

_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL_ABI1 = (1 << 13) - 1          # execute .. make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2

_libc = None


def _get_libc():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _prctl(option, arg2=0):
    import ctypes

    libc = _get_libc()
    if libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(%d) failed" % option)


def landlock_abi():
    """Landlock ABI version of the running kernel, or 0 where unavailable."""
    try:
        import ctypes

        libc = _get_libc()
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        return abi if abi > 0 else 0
    except Exception:
        return 0


def apply_landlock(read_paths, write_paths):
    """Confine this process (and its future children) to the given paths.

    Returns a short description of what was enforced, or raises OSError.
    """
    import ctypes

    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available")
    libc = _get_libc()
    handled_fs = _FS_ALL_ABI1
    if abi >= 2:
        handled_fs |= _FS_REFER
    if abi >= 3:
        handled_fs |= _FS_TRUNCATE
    if abi >= 5:
        handled_fs |= _FS_IOCTL_DEV
    handled_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(handled_fs, handled_net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    libc.syscall.restype = ctypes.c_long
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    read_access = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    try:
        for paths, access in ((read_paths, read_access), (write_paths, handled_fs)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a listed path that does not exist grants nothing
                try:
                    allowed = access
                    if not os.path.isdir(path):
                        # Directory-only rights are invalid on a file.
                        allowed &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
                    rule = PathBeneath(allowed & handled_fs, fd)
                    if libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
                        raise OSError(ctypes.get_errno(), "landlock_add_rule(%s) failed" % path)
                finally:
                    os.close(fd)
        if libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    parts = ["fs"]
    if handled_net:
        parts.append("tcp")
    if scoped:
        parts.append("signals")
    return "landlock(abi %d: %s)" % (abi, ",".join(parts))


def drop_capabilities():
    """Empty this process's capability sets (meaningful inside a user namespace,
    where the process starts as that namespace's root)."""
    import ctypes

    nr = _SYS_CAPSET.get(os.uname().machine)
    if nr is None:
        return False
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    libc = _get_libc()
    return libc.syscall(nr, ctypes.byref(header), ctypes.byref(data)) == 0


def set_limits(limits):
    import resource

    def lim(res, value):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass

    lim(resource.RLIMIT_CPU, int(limits["cpu_seconds"]))
    lim(resource.RLIMIT_AS, int(limits["memory_mb"]) * 1024 * 1024)
    lim(resource.RLIMIT_FSIZE, int(limits["file_size_mb"]) * 1024 * 1024)
    lim(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    lim(resource.RLIMIT_CORE, 0)
    # NPROC counts threads too, and is not enforced for real root; the pid
    # namespace and the supervisor's clean-up are the real process limits.
    lim(resource.RLIMIT_NPROC, int(limits["processes"]))


_BLOCKED_EVENTS = (
    "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system", "os.spawn",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "ctypes.", "socket.", "sys._current_frames", "sys.settrace", "sys.setprofile",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.chroot",
    "os.setxattr", "os.removexattr", "os.link", "os.symlink", "mmap.__new__",
    "winreg.", "_winapi.",
)
_BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing",
                              "_multiprocessing", "socket", "_socket", "pty", "mmap", "_xxsubinterpreters"})
_WRITE_EVENTS = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                           "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"})

# Syscalls the worker must not make, by architecture. Process creation is cut
# at the root (clone without CLONE_THREAD, fork, vfork, exec: threads still
# work), as are sockets of every family (UNIX sockets with a path are not
# isolated by a network namespace, and Landlock ABI <= 7 covers TCP only),
# metadata changes Landlock does not cover (chmod, chown, utimes, xattrs),
# limits of other processes (prlimit with a pid), ptrace and cross-process
# memory access, namespace and mount changes, and io_uring (whose operations
# seccomp cannot see).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENY = {
    "x86_64": (57, 58, 59, 322, 41, 101, 310, 311, 90, 91, 268, 452, 92, 93, 94, 260, 132, 235, 261, 280,
               188, 189, 190, 197, 198, 199, 463, 466, 425, 426, 427, 272, 308, 165, 166, 155, 161, 133, 259,
               250, 248, 249, 321, 298, 323),
    "aarch64": (221, 281, 198, 117, 270, 271, 52, 53, 452, 55, 54, 88, 5, 6, 7, 14, 15, 16, 463, 466,
                425, 426, 427, 97, 268, 40, 39, 41, 51, 33, 219, 217, 218, 280, 241, 282),
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_PRLIMIT64 = {"x86_64": 302, "aarch64": 261}
_CLONE_THREAD = 0x10000
_EPERM, _ENOSYS = 1, 38


def apply_seccomp():
    """Install the worker's syscall filter (needs no-new-privs). Returns a description."""
    import ctypes

    machine = os.uname().machine
    if machine not in _AUDIT_ARCH:
        raise OSError("no seccomp syscall table for %s" % machine)
    LD_W_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    deny, nosys = 0x00050000 | _EPERM, 0x00050000 | _ENOSYS
    prog = [(LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            (JEQ, 1, 0, _AUDIT_ARCH[machine]), (RET, 0, 0, KILL),  # other ABIs (i386 via int 0x80): kill
            (LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    if machine == "x86_64":
        prog += [(JGE, 0, 1, 0x40000000), (RET, 0, 0, deny)]  # the x32 ABI
    for nr in _DENY[machine]:
        prog += [(JEQ, 0, 1, nr), (RET, 0, 0, deny)]
    prog += [(JEQ, 0, 1, _CLONE3), (RET, 0, 0, nosys)]  # glibc then falls back to clone
    prog += [(JEQ, 0, 4, _CLONE[machine]), (LD_W_ABS, 0, 0, 16),  # clone: args[0] = flags
             (JSET, 1, 0, _CLONE_THREAD), (RET, 0, 0, deny), (RET, 0, 0, ALLOW)]
    prog += [(LD_W_ABS, 0, 0, 0), (JEQ, 0, 4, _PRLIMIT64[machine]), (LD_W_ABS, 0, 0, 16),  # args[0] = pid
             (JEQ, 1, 0, 0), (RET, 0, 0, deny), (RET, 0, 0, ALLOW)]
    prog += [(RET, 0, 0, ALLOW)]

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Insn))]

    insns = (Insn * len(prog))(*[Insn(*i) for i in prog])
    fprog = Prog(len(prog), insns)
    libc = _get_libc()
    # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)
    if libc.prctl(22, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")
    return "seccomp(no processes, sockets, chmod/chown/utimes/xattrs, ptrace, io_uring)"


def install_audit_hook(root):
    """Refuse, at the Python level, what the model's code has no business doing."""
    root = os.path.realpath(root)
    realpath, fspath, startswith = os.path.realpath, os.fspath, str.startswith

    def inside(path):
        try:
            p = fspath(path)
            if isinstance(p, bytes):
                p = p.decode("utf-8", "replace")
            if not isinstance(p, str):
                return True  # a file descriptor: already open
            p = realpath(p)
        except Exception:
            return False
        return p == root or startswith(p, root + "/")

    def hook(event, args):
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError("sandbox: %s is not allowed" % event)
        if event == "import" and args and args[0] in _BLOCKED_IMPORTS:
            raise PermissionError("sandbox: import of %s is not allowed" % args[0])
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if writing and not inside(path):
                raise PermissionError("sandbox: writing outside the working directory is not allowed")
        elif event in _WRITE_EVENTS:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                    raise PermissionError("sandbox: %s outside the working directory is not allowed" % event)
        elif event == "object.__getattr__" and len(args) >= 2 and args[1] in ("tb_frame", "gi_frame", "cr_frame", "ag_frame"):
            raise PermissionError("sandbox: frame introspection is not allowed")

    sys.addaudithook(hook)


# ------------------------------------------------------------------- worker
def _worker(job, call_r, reply_w, report):
    """Load the model's program and answer calls to the entry point. Never returns."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # Close everything else, the verdict channel above all.
    low = 3
    for fd in sorted((call_r, reply_w)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    applied = []
    write_msg, read_msg = _write_msg, _read_msg
    try:
        limits = job["limits"]
        set_limits(limits)
        applied.append("rlimits")
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        if drop_capabilities():
            applied.append("no-capabilities")
        cwd = os.getcwd()
        if job.get("landlock", True) and landlock_abi() > 0:
            applied.append(apply_landlock(job["read_paths"], [cwd, os.devnull]))
        if os.uname().machine in _AUDIT_ARCH:
            applied.append(apply_seccomp())
        install_audit_hook(cwd)
        applied.append("audit-hook")
    except Exception as exc:  # confinement failed: refuse to run the program
        write_msg(reply_w, {"fatal": "sandbox setup failed: %r" % (exc,)})
        os._exit(1)
    # Confined. From here on the supervisor treats whatever arrives as coming
    # from the program: a "fatal" message now would be a forgery.
    write_msg(reply_w, {"confined": True, "applied": applied, "pid": os.getpid(), "uid": os.getuid()})
    if report:
        os._exit(0)

    namespace = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        exec(compile(job["prompt"] + job["completion"], "<candidate>", "exec"), namespace)
        fn = namespace.get(job["entry_point"])
        if not callable(fn):
            write_msg(reply_w, {"load_error": "entry point %r is not defined" % job["entry_point"]})
            os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - any failure to load is a FAIL
        write_msg(reply_w, {"load_error": _describe(exc)})
        os._exit(0)
    write_msg(reply_w, {"ready": True})
    while True:
        try:
            request = read_msg(call_r, None)
        except BaseException:
            os._exit(0)
        try:
            result = fn(*request["args"], **request["kwargs"])
            reply = {"value": result}
        except BaseException as exc:  # noqa: BLE001 - report, the tests decide
            reply = {"raise": _describe(exc)}
        try:
            try:
                write_msg(reply_w, reply)
            except Unencodable as exc:
                write_msg(reply_w, {"raise": ["TypeError", str(exc)]})
        except BaseException:
            os._exit(0)


def _describe(exc):
    try:
        name = type(exc).__name__
        msg = str(exc)[:500]
    except BaseException:
        name, msg = "Exception", ""
    return [name if isinstance(name, str) else "Exception", msg if isinstance(msg, str) else ""]


# --------------------------------------------------------------- supervisor
class _WorkerGone(Exception):
    pass


def _reraise(builtins_ns, desc):
    name, msg = desc if isinstance(desc, list) and len(desc) == 2 else ("Exception", "")
    cls = builtins_ns.get(name) if isinstance(name, str) else None
    # StopIteration would silently end a generator or map() in the tests
    # (turning "the candidate raised" into "all checks passed").
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(
            cls, (StopIteration, StopAsyncIteration)):
        raise cls(msg)
    # SystemExit, KeyboardInterrupt and non-builtin exceptions all become a
    # plain runtime error: the tests see a failure, the supervisor lives on.
    raise RuntimeError("%s: %s" % (name, msg))


def _make_proxy(entry_point, call_w, reply_r, deadline, builtins_ns):
    def candidate(*args, **kwargs):
        _write_msg(call_w, {"args": list(args), "kwargs": dict(kwargs)})
        try:
            reply = _read_msg(reply_r, deadline)
        except EOFError:
            raise _WorkerGone("the program's process ended during a call")
        except (ValueError, TypeError, OverflowError, RecursionError, UnicodeDecodeError) as exc:
            raise _WorkerGone("unreadable reply (%s)" % exc)
        if type(reply) is not dict:
            raise _WorkerGone("protocol violation")
        if "value" in reply:
            return reply["value"]
        if "raise" in reply:
            _reraise(builtins_ns, reply["raise"])
        raise _WorkerGone("protocol violation")

    candidate.__name__ = candidate.__qualname__ = entry_point
    return candidate


def _kill_descendants():
    """SIGKILL every process below this one (we are their subreaper)."""
    me = str(os.getpid())
    for _ in range(50):
        found = []
        try:
            for tid in os.listdir("/proc/%s/task" % me):
                with open("/proc/%s/task/%s/children" % (me, tid)) as f:
                    found += f.read().split()
        except OSError:
            return
        if not found:
            return
        stack = list(found)
        while stack:
            pid = stack.pop()
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass
            try:
                for tid in os.listdir("/proc/%s/task" % pid):
                    with open("/proc/%s/task/%s/children" % (pid, tid)) as f:
                        stack += f.read().split()
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return
        time.sleep(0.001)


def supervise(job, stdin_fd):
    """Run one job. ``job`` holds what the worker needs; the tests (and the
    verdict descriptor) are read from ``stdin_fd`` only after the worker has
    been forked, so its memory never held them."""
    start = time.monotonic()
    deadline = start + float(job["limits"]["timeout"])
    import builtins as _b

    builtins_ns = dict(vars(_b))  # pristine copy, taken before any untrusted code ran
    try:
        _prctl(_PR_SET_DUMPABLE, 0)
        if os.getpid() != 1:
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        pass
    call_r, call_w = os.pipe()
    reply_r, reply_w = os.pipe()
    report = bool(job.get("probe"))
    pid = os.fork()
    if pid == 0:
        try:
            _worker(job, call_r, reply_w, report)
        finally:
            os._exit(1)
    os.close(call_r)
    os.close(reply_w)
    tests = _read_msg(stdin_fd, deadline)
    os.close(stdin_fd)
    verdict_fd = int(tests["verdict_fd"])
    verdict = {"status": "failed", "detail": "", "applied": []}
    try:
        # 1. Before any of the program's code ran: confined, or setup failed.
        hello = _read_msg(reply_r, deadline)
        if type(hello) is not dict:
            raise _WorkerGone("protocol violation")
        if "fatal" in hello:
            verdict.update(status="sandbox_error", detail=str(hello["fatal"])[:500])
        elif hello.get("confined") is not True:
            raise _WorkerGone("protocol violation")
        elif report:
            verdict.update(status="probe", detail="", pid_in_sandbox=os.getpid(), worker_uid=hello.get("uid"),
                           applied=[a for a in hello.get("applied", []) if isinstance(a, str)])
        else:
            # 2. After the program loaded (everything from here is the program's word).
            loaded = _read_msg(reply_r, deadline)
            if type(loaded) is dict and "load_error" in loaded:
                verdict.update(status="failed", detail=("program did not load: %s" % ": ".join(
                    map(str, loaded["load_error"])))[:500])
            elif type(loaded) is dict and loaded.get("ready") is True:
                _run_tests(dict(job, **tests), call_w, reply_r, deadline, builtins_ns)
                verdict.update(status="passed", detail="")
            else:
                raise _WorkerGone("protocol violation")
    except TimeoutError:
        verdict.update(status="timeout", detail="exceeded %.1fs" % job["limits"]["timeout"])
    except (_WorkerGone, EOFError) as exc:
        verdict.update(status="failed", detail="program ended or misbehaved: %s" % (exc or "exited before the tests"))
    except AssertionError as exc:
        verdict.update(status="failed", detail=("AssertionError: %s" % exc)[:500])
    except BaseException as exc:  # noqa: BLE001
        verdict.update(status="failed", detail=("%s: %s" % (type(exc).__name__, exc))[:500])
    verdict["seconds"] = round(time.monotonic() - start, 4)
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass
    # Nothing the program started may outlive the verdict. As pid 1 of a pid
    # namespace our exit kills them all; without one, we are their subreaper.
    if os.getpid() != 1:
        _kill_descendants()
    _write_msg(verdict_fd, verdict)


def _run_tests(job, call_w, reply_r, deadline, builtins_ns):
    """Execute the problem's test code here, with the worker's function as candidate."""
    proxy = _make_proxy(job["entry_point"], call_w, reply_r, deadline, builtins_ns)
    ns = {"__name__": "__tests__", "__builtins__": builtins_ns}
    # The prompt (trusted problem text) may define helpers the tests use,
    # e.g. HumanEval/38's encode_cyclic. Its entry point is a stub here.
    for source in (job["prompt"], job["prompt"] + "\n    pass\n"):
        try:
            exec(compile(source, "<prompt>", "exec"), ns)
            break
        except SyntaxError:
            continue
    ns[job["entry_point"]] = proxy
    exec(compile(job["test"], "<tests>", "exec"), ns)
    check = ns.get("check")
    if not callable(check):
        raise RuntimeError("the test code defines no check(candidate)")
    check(proxy)


def main():
    # Exact reads, no buffering: the tests' frame must still be in the pipe,
    # not in this process's memory, when the worker is forked.
    job = _read_msg(0, None)
    supervise(job, 0)
    os._exit(0)


if __name__ == "__main__":
    main()
