"""The trusted half of one sandboxed execution: a supervisor and its worker.

Run as ``python -I -S launcher.py`` by :mod:`lm_eval_ext.execution.sandbox`,
inside whatever OS isolation the machine allows (namespaces via ``unshare``).
It reads one job (JSON) on stdin and writes one verdict (JSON) on the descriptor the job names.

Or run once as ``python -I -S launcher.py --zygote`` (same ``unshare``, same
environment; see :mod:`lm_eval_ext.execution.zygote` for the harness's
side): a *zygote* that imports the modules the tests need, builds the
Landlock read rules and the seccomp program once, and for each job forks a
supervisor into fresh namespaces (pid, mount with its own /proc and tmpfs,
user, IPC, UTS; the network namespace, with no interface up, is the
zygote's, held by one program at a time, where the seccomp filter refuses
every socket), which then runs the job exactly as below (:func:`zygote`).
The zygote never reads a job's frames and never runs a program; its
children are confined per program: the worker enforces the zygote's read
layer plus a Landlock layer of its own (writes to its own tmpfs only,
signals scoped to its own domain), and its own rlimits, seccomp, audit hook
and thread cap.

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
runs: in the namespaces tier, a working directory that is a tmpfs bounded in
bytes and inodes and a pid namespace whose pid_max caps its tasks (set up by
the supervisor, see ``_private_workdir``); resource limits (CPU, address
space, file size, open files, processes and threads), no-new-privs and an
empty capability set, a Landlock ruleset (read-only access to the standard
library and shared libraries only, never an installed package's directory:
see ``sandbox._read_paths``; read-write to its own temporary directory only;
no TCP; no signals or abstract sockets outside its domain) where the kernel
has Landlock, a seccomp filter (no process creation, sockets or socketpairs,
memfd or SysV shared memory, metadata changes, ptrace or io_uring; see
``apply_seccomp``), a CPython audit hook that refuses process creation,
signals, ctypes, sockets, reads outside the standard library and writes
outside the temporary directory, and a cap on live Python threads. The audit
hook and the thread cap are convenience layers (clear errors, and a guard
where the kernel offers nothing better; a program can switch them off); the
kernel mechanisms are the sandbox.

What the supervisor reads from the worker is bounded (8 MB and 1M items per
reply), and it reads and writes against the program's deadline.

What it does not guard against: kernel exploits; side channels; a test that
mutates its arguments and inspects them afterwards (arguments are copies);
candidate functions that take or return objects other than builtin data
(functions, class instances): those calls fail, and the sample FAILS. Where
the machine lacks a mechanism, its bound is weaker, not absent-and-silent:
without namespaces the disk is bounded per file only (RLIMIT_FSIZE); as root
on Linux < 6.14, threads started from C (after switching off the Python
layers) are bounded only by RLIMIT_AS; without Landlock, reads and writes are
refused only by the audit hook.

The tests reach the supervisor as a second frame on stdin, read only after
the worker has been forked, so the worker's memory never holds them (nor,
in the zygote mode, the zygote's: it only passes the pipe on). ``random``'s
generator is reseeded in every forked process, so a worker cannot predict
the arguments its supervisor's tests draw.

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
#
# What the worker sends is bounded twice: 8 MB per reply (a 60 MB reply of
# empty lists once decoded to 2.5 GB in the supervisor), and 1M items per reply
# (decoding time and memory grow with the item count, not the bytes). The
# trusted frames (the job, the tests, the calls) have only the 64 MB bound.
_MAX_DEPTH = 200
_MAX_MESSAGE = 64 * 1024 * 1024
_MAX_REPLY = 8 * 1024 * 1024
_MAX_REPLY_ITEMS = 1 << 20
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


def decode(data, max_items=None):
    budget = [(1 << 62) if max_items is None else max_items]
    value, pos = _dec(data, 0, 0, budget)
    if pos != len(data):
        raise ValueError("trailing bytes")
    return value


def _take(data, pos, n):
    if n < 0 or pos + n > len(data):
        raise ValueError("truncated value")
    return data[pos:pos + n], pos + n


def _dec(data, pos, depth, budget):
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
    budget[0] -= n
    if budget[0] < 0:
        raise ValueError("too many items")
    if tag == b"d":
        out = {}
        for _ in range(n):
            k, pos = _dec(data, pos, depth + 1, budget)
            v, pos = _dec(data, pos, depth + 1, budget)
            out[k] = v  # an unhashable key raises TypeError: a malformed message
        return out, pos
    items = []
    for _ in range(n):
        v, pos = _dec(data, pos, depth + 1, budget)
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
def _write_msg(fd, obj, deadline=None):
    """Write one frame. With a deadline, ``fd`` must be non-blocking: a peer
    that stops reading cannot hold the writer past it."""
    data = encode(obj)
    buf = memoryview(_U32.pack(len(data)) + data)
    while buf:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("program exceeded its time limit")
            if not select.select([], [fd], [], remaining)[1]:
                continue
        try:
            n = os.write(fd, buf[:1 << 20])
        except BlockingIOError:
            continue
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


def _read_msg(fd, deadline, limit=_MAX_MESSAGE, max_items=None):
    (n,) = _U32.unpack(_read_exact(fd, 4, deadline))
    if n > limit:
        raise ValueError("message too large")
    value = decode(_read_exact(fd, n, deadline), max_items)
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError("program exceeded its time limit")
    return value


def _read_reply(fd, deadline):
    """A message from the worker, i.e. from the program: bounded in size and items."""
    return _read_msg(fd, deadline, _MAX_REPLY, _MAX_REPLY_ITEMS)


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


def _landlock_handled(abi):
    """What a ruleset of this ABI handles: (file system, TCP, scopes)."""
    handled_fs = _FS_ALL_ABI1
    if abi >= 2:
        handled_fs |= _FS_REFER
    if abi >= 3:
        handled_fs |= _FS_TRUNCATE
    if abi >= 5:
        handled_fs |= _FS_IOCTL_DEV
    handled_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    return handled_fs, handled_net, scoped


_STRUCTS = []


def _landlock_structs():
    """The ctypes structures of the Landlock calls, made once per process
    (a class is a fraction of a millisecond: the zygote makes them for its
    children)."""
    if not _STRUCTS:
        import ctypes

        class RulesetAttr(ctypes.Structure):
            _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        _STRUCTS[:] = [RulesetAttr, PathBeneath]
    return _STRUCTS


def landlock_ruleset(rules, handled_fs, handled_net=0, scoped=0):
    """A Landlock ruleset (a descriptor; not applied) handling the given
    rights, with ``rules``: ``(paths, access)`` pairs, ``paths`` being
    ``(path, is_dir)`` pairs or plain paths (looked up here). A listed path
    that does not exist grants nothing. Raises OSError."""
    import ctypes

    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available")
    libc = _get_libc()
    RulesetAttr, PathBeneath = _landlock_structs()
    attr = RulesetAttr(handled_fs, handled_net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    libc.syscall.restype = ctypes.c_long
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    # Directory-only rights are invalid on a file.
    file_only = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
    rule = PathBeneath(0, -1)
    rule_ref, syscall = ctypes.byref(rule), libc.syscall
    try:
        for paths, access in rules:
            for entry in paths:
                path, is_dir = (entry, None) if isinstance(entry, str) else entry
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a listed path that does not exist grants nothing
                try:
                    if is_dir is None:
                        is_dir = os.path.isdir(path)
                    rule.allowed = (access if is_dir else access & file_only) & handled_fs
                    rule.parent_fd = fd
                    if rule.allowed and syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, 1, rule_ref, 0) != 0:
                        raise OSError(ctypes.get_errno(), "landlock_add_rule(%s) failed" % path)
                finally:
                    os.close(fd)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


def landlock_restrict(ruleset):
    """Enforce a ruleset on this process and its future children (a new
    Landlock layer on top of any it already has). Needs no-new-privs."""
    import ctypes

    libc = _get_libc()
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")


def _landlock_description(abi):
    _, handled_net, scoped = _landlock_handled(abi)
    parts = ["fs"]
    if handled_net:
        parts.append("tcp")
    if scoped:
        parts.append("signals")
    return "landlock(abi %d: %s)" % (abi, ",".join(parts))


_FS_READ_RIGHTS = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR


def apply_landlock(read_paths, write_paths):
    """Confine this process (and its future children) to the given paths.

    ``read_paths`` are ``(path, is_dir)`` pairs (the harness lists a few
    hundred, and knows once per process which are directories); a plain path
    is looked up here. Returns a short description of what was enforced, or
    raises OSError.
    """
    abi = landlock_abi()
    handled_fs, handled_net, scoped = _landlock_handled(abi)
    ruleset = landlock_ruleset(((read_paths, _FS_READ_RIGHTS), (write_paths, handled_fs)),
                               handled_fs, handled_net, scoped)
    try:
        landlock_restrict(ruleset)
    finally:
        os.close(ruleset)
    return _landlock_description(abi)


def zygote_read_ruleset(read_paths, root):
    """The zygote's half of a worker's Landlock confinement, built once per
    zygote (a few hundred rules) and enforced by each worker: it handles the
    read rights (and TCP) only, and grants them on ``read_paths``, /dev/null
    and ``root``, the zygote's directory. ``root`` holds one empty directory,
    over which each program mounts its own tmpfs in its own mount namespace
    (a rule on a mount point's parent covers the file system mounted there;
    one on the hidden mount point itself would not)."""
    abi = landlock_abi()
    _, handled_net, _ = _landlock_handled(abi)
    return landlock_ruleset(((read_paths, _FS_READ_RIGHTS), ([(root, True), (os.devnull, False)], _FS_READ_RIGHTS)),
                            _FS_READ_RIGHTS, handled_net, 0)


def apply_zygote_landlock(read_ruleset, write_paths):
    """Enforce the zygote's read layer, then a layer of this program's own
    that handles every other right (writes, removals, creations, renames,
    truncation, device ioctls) and grants them on ``write_paths`` only (its
    tmpfs and /dev/null), and scopes signals and abstract sockets to its
    domain. Together: what :func:`apply_landlock` enforces for
    ``(read_paths, write_paths)``, with the zygote's directory readable (it
    holds nothing but the mount point of this program's tmpfs)."""
    abi = landlock_abi()
    handled_fs, _, scoped = _landlock_handled(abi)
    landlock_restrict(read_ruleset)
    writes = handled_fs & ~_FS_READ_RIGHTS
    ruleset = landlock_ruleset(((write_paths, writes),), writes, 0, scoped)
    try:
        landlock_restrict(ruleset)
    finally:
        os.close(ruleset)
    return _landlock_description(abi)


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
    # NPROC counts every task of this user (in its user namespace), threads
    # included: unshare, the supervisor, the worker, then the program's
    # threads. The kernel does not enforce it for real root (the namespace
    # maps to root when the harness runs as root): there the pid namespace's
    # pid_max (see _private_workdir) and cap_python_threads bound the threads.
    # Without namespaces the count is all of the user's processes, so a busy
    # user's program may get no thread at all.
    lim(resource.RLIMIT_NPROC, int(limits["processes"]) + int(limits["threads"]) + 3)


_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_PID_MAX_MIN = 301  # the kernel refuses smaller values


def _private_workdir(limits):
    """In the namespaces tier (we are pid 1 and root of our own user and mount
    namespaces), before the worker exists: make the working directory a
    size- and inode-limited tmpfs, and cap the tasks of the pid namespace.

    The tmpfs bounds the total the program can write (RLIMIT_FSIZE is per
    file), and is gone with the namespace: the harness never walks the tree
    the program made. It is mounted over the harness's empty directory, in our
    private mount namespace only. pid_max is per pid namespace since Linux
    6.14 and is written only there: before, it is one global value, which a
    user namespace mapped onto real root (the harness run as root) may write.
    Each step degrades to nothing on failure. Returns what was applied.
    """
    import ctypes

    applied = []
    cwd = os.getcwd()
    opts = "size=%dk,nr_inodes=%d,mode=700" % (int(limits["disk_mb"]) * 1024, int(limits["disk_inodes"]))
    libc = _get_libc()
    if libc.mount(b"tmpfs", os.fsencode(cwd), b"tmpfs", ctypes.c_ulong(_MS_NOSUID | _MS_NODEV | _MS_NOEXEC),
                  opts.encode()) == 0:
        os.chdir(cwd)  # onto the new file system
        applied.append("tmpfs(%dMB, %d inodes)" % (limits["disk_mb"], limits["disk_inodes"]))
    pid_max = max(_PID_MAX_MIN, int(limits["threads"]) + 8)
    try:
        release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
        if release < (6, 14):
            raise OSError("pid_max is global before Linux 6.14")
        fd = os.open("/proc/sys/kernel/pid_max", os.O_WRONLY)
        try:
            os.write(fd, b"%d" % pid_max)
        finally:
            os.close(fd)
        applied.append("pid_max(%d)" % pid_max)
    except (OSError, ValueError):
        pass
    return applied


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
_LIST_EVENTS = frozenset({"os.listdir", "os.scandir"})

# Syscalls the worker must not make, by architecture. Process creation is cut
# at the root (clone without CLONE_THREAD, fork, vfork, exec: threads still
# work), as are sockets of every family, socketpair included (UNIX sockets
# with a path are not isolated by a network namespace, and Landlock ABI <= 7
# covers TCP only; the stdlib needs socketpair only for asyncio's event loop
# and multiprocessing, whose imports the audit hook refuses anyway), memory
# that RLIMIT_AS does not count (memfd_create, memfd_secret, SysV shmget),
# metadata changes Landlock does not cover (chmod, chown, utimes, xattrs),
# limits of other processes (prlimit with a pid), ptrace, cross-process
# memory and descriptor access (process_vm_*, pidfd_getfd), namespace and
# mount changes (old and new mount API), and io_uring (whose operations
# seccomp cannot see).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENY = {
    "x86_64": (57, 58, 59, 322, 41, 53, 101, 310, 311, 438, 90, 91, 268, 452, 92, 93, 94, 260, 132, 235, 261,
               280, 188, 189, 190, 197, 198, 199, 463, 466, 425, 426, 427, 272, 308, 165, 166, 155, 161, 133,
               259, 428, 429, 430, 431, 432, 433, 442, 250, 248, 249, 321, 298, 323, 319, 447, 29),
    "aarch64": (221, 281, 198, 199, 117, 270, 271, 438, 52, 53, 452, 55, 54, 88, 5, 6, 7, 14, 15, 16, 463,
                466, 425, 426, 427, 97, 268, 40, 39, 41, 51, 33, 428, 429, 430, 431, 432, 433, 442, 219, 217,
                218, 280, 241, 282, 279, 447, 194),
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_PRLIMIT64 = {"x86_64": 302, "aarch64": 261}
_CLONE_THREAD = 0x10000
_EPERM, _ENOSYS = 1, 38


_SECCOMP = []  # the filter, built once (by the zygote before it forks, see seccomp_filter)


def seccomp_filter():
    """The worker's syscall filter as a ctypes ``sock_fprog``, built once per process."""
    import ctypes

    if _SECCOMP:
        return _SECCOMP[0]
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
    _SECCOMP.append((fprog, insns))  # the program points into insns: keep both alive
    return _SECCOMP[0]


def apply_seccomp():
    """Install the worker's syscall filter (needs no-new-privs). Returns a description."""
    import ctypes

    fprog, _ = seccomp_filter()
    libc = _get_libc()
    # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)
    if libc.prctl(22, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")
    return "seccomp(no processes, sockets, memfd/shm, chmod/chown/utimes/xattrs, ptrace, io_uring)"


def _may_read(path, readable):
    """Whether ``path`` lies in one of the ``readable`` trees (real paths), the
    same rule as the worker's Landlock read rules. A descriptor is already open."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return True
    try:
        p = os.fspath(path)
        if isinstance(p, bytes):
            p = p.decode("utf-8", "surrogateescape")
        p = os.path.realpath(p)
    except Exception:
        return False
    while True:
        if p in readable:
            return True
        if p == "/" or not p:
            return False
        p = p.rpartition("/")[0] or "/"


def cap_python_threads(max_threads):
    """At most ``max_threads`` live threads started from Python (CPython 3.11
    has no audit event for it). A convenience layer like the audit hook: the
    kernel's caps (RLIMIT_NPROC, pid_max: see set_limits) also cover threads
    started from C, where they apply."""
    import _thread

    count = getattr(_thread, "_count", None)  # live threads started through _thread
    if count is None:
        return False

    def capped(start):
        def start_thread(*args, **kwargs):
            if count() >= max_threads:
                raise RuntimeError("can't start new thread: the sandbox allows %d" % max_threads)
            return start(*args, **kwargs)
        return start_thread

    for name in ("start_new_thread", "start_new", "start_joinable_thread"):
        if hasattr(_thread, name):
            setattr(_thread, name, capped(getattr(_thread, name)))
    threading = sys.modules.get("threading")  # not imported yet, normally
    for name in ("_start_new_thread", "_start_joinable_thread"):
        if threading is not None and hasattr(threading, name):
            setattr(threading, name, capped(getattr(threading, name)))
    return True


def _unpack_read_paths(packed):
    """The read rules as (path, is_dir) pairs: one rule a line, "d" (directory)
    or "f" first (see sandbox._packed_read_paths)."""
    return [(line[1:], line[0] == "d") for line in packed.split("\n") if line]


def _readable(read_paths):
    """The audit hook's readable trees: ``read_paths`` and /dev/null."""
    return frozenset([os.devnull] + [p if isinstance(p, str) else p[0] for p in read_paths])


def install_audit_hook(root, read_paths=()):
    """Refuse, at the Python level, what the model's code has no business doing:
    besides the blocked events, writes outside ``root``, and reads outside
    ``root`` and ``read_paths`` (a second layer over Landlock's read rules,
    and the only one where the kernel has no Landlock)."""
    root = os.path.realpath(root)
    realpath, fspath, startswith = os.path.realpath, os.fspath, str.startswith
    if not isinstance(read_paths, frozenset):  # a frozenset: _readable(read_paths), made beforehand
        read_paths = _readable(read_paths)
    readable = read_paths | {root}

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
            if not writing and not _may_read(path, readable):
                raise PermissionError("sandbox: reading outside the Python standard library is not allowed")
        elif event in _LIST_EVENTS:
            if args and args[0] is not None and not _may_read(args[0], readable):
                raise PermissionError("sandbox: listing outside the Python standard library is not allowed")
        elif event in _WRITE_EVENTS:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                    raise PermissionError("sandbox: %s outside the working directory is not allowed" % event)
        elif event == "object.__getattr__" and len(args) >= 2 and args[1] in ("tb_frame", "gi_frame", "cr_frame", "ag_frame"):
            raise PermissionError("sandbox: frame introspection is not allowed")

    sys.addaudithook(hook)


# ------------------------------------------------------------------- worker
def _worker(job, call_r, reply_w, report, zyg=None):
    """Load the model's program and answer calls to the entry point. Never
    returns. ``zyg``: what the zygote prepared (see :func:`zygote`), or None."""
    ruleset = zyg.get("ruleset") if zyg else None
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # Close everything else, the verdict channel above all (the zygote's
    # Landlock ruleset, a descriptor, is closed as soon as it is enforced).
    low = 3
    for fd in sorted({call_r, reply_w} | ({ruleset} if ruleset is not None else set())):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    applied = []
    write_msg, read_msg = _write_msg, _read_msg
    try:
        limits = job["limits"]
        set_limits(limits)
        applied.append("rlimits")
        if (zyg["outer_uid"] if zyg else _outer_uid()) != 0:
            applied.append("nproc(%d)" % (int(limits["processes"]) + int(limits["threads"]) + 3))
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        if drop_capabilities():
            applied.append("no-capabilities")
        cwd = os.getcwd()
        if zyg:
            read_paths = zyg["read_paths"]
        else:
            read_paths = _unpack_read_paths(job["read_paths"])
        if job.get("landlock", True) and landlock_abi() > 0:
            if ruleset is not None:
                applied.append(apply_zygote_landlock(ruleset, [cwd, os.devnull]))
            else:
                applied.append(apply_landlock(read_paths, [cwd, os.devnull]))
        if ruleset is not None:
            os.close(ruleset)  # before any of the program's code runs
        if os.uname().machine in _AUDIT_ARCH:
            applied.append(apply_seccomp())
        install_audit_hook(cwd, zyg["readable"] if zyg else read_paths)
        applied.append("audit-hook")
        if cap_python_threads(int(limits["threads"])):
            applied.append("threads(%d)" % int(limits["threads"]))
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


def _reseed():
    """Fresh state for ``random`` where it is loaded: a zygote's children all
    inherit its generator, and a worker must not be able to predict the
    random arguments its supervisor's tests draw."""
    r = sys.modules.get("random")
    if r is not None:
        try:
            r.seed()
        except Exception:
            pass


def _outer_uid():
    """This process's user id outside every user namespace (the kernel
    enforces RLIMIT_NPROC for anyone but that root), or 0 when unknown."""
    uid = os.getuid()
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inner, outer, count = map(int, line.split())
                if inner <= uid < inner + count:
                    return outer + uid - inner
    except (OSError, ValueError):
        pass
    return 0


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


def _make_proxy(entry_point, call_w, reply_r, deadline, builtins_ns, faults):
    """The candidate the tests call. A timeout or a broken worker is also
    recorded in ``faults``: the tests may catch the exception (``try: ...
    except Exception``), the verdict does not forget it."""
    def fault(exc):
        faults.append(exc)
        return exc

    def candidate(*args, **kwargs):
        try:
            # Unencodable arguments (the tests' own values) raise out of here as they are.
            _write_msg(call_w, {"args": list(args), "kwargs": dict(kwargs)}, deadline)
        except TimeoutError as exc:
            raise fault(exc)
        except BrokenPipeError:
            raise fault(_WorkerGone("the program's process ended during a call"))
        try:
            reply = _read_reply(reply_r, deadline)
        except TimeoutError as exc:
            raise fault(exc)
        except EOFError:
            raise fault(_WorkerGone("the program's process ended during a call"))
        except (ValueError, TypeError, OverflowError, RecursionError, UnicodeDecodeError) as exc:
            raise fault(_WorkerGone("unreadable reply (%s)" % exc))
        if type(reply) is not dict:
            raise fault(_WorkerGone("protocol violation"))
        if "value" in reply:
            return reply["value"]
        if "raise" in reply:
            _reraise(builtins_ns, reply["raise"])
        raise fault(_WorkerGone("protocol violation"))

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


def supervise(job, stdin_fd, zyg=None):
    """Run one job. ``job`` holds what the worker needs; the tests (and the
    verdict descriptor) are read from ``stdin_fd`` only after the worker has
    been forked, so its memory never held them. ``zyg``: run as a zygote's
    child (see :func:`zygote`), else None."""
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
    if zyg is not None:  # a zygote's child has made its working directory (see _zygote_supervisor)
        applied = list(zyg["applied"])
        if not any(a.startswith("tmpfs(") for a in applied):
            # Without its own tmpfs a zygote's child would work in the
            # directory all its siblings share: refuse, and the harness runs
            # the program the per-program way.
            _write_msg(ZYGOTE_VERDICT_FD, {"status": "zygote_error", "detail": "no private tmpfs"})
            return
    else:
        applied = _private_workdir(job["limits"]) if os.getpid() == 1 else []
    # Packages the harness allows solutions to import (usually none). The
    # standard library's import caches were filled when this script started:
    # the worker may read the stdlib's entries but not list its directory.
    sys.path.extend(p for p in job.get("sys_path", ()) if isinstance(p, str))
    call_r, call_w = os.pipe()
    reply_r, reply_w = os.pipe()
    report = bool(job.get("probe"))
    pid = os.fork()
    if pid == 0:
        try:
            _worker(job, call_r, reply_w, report, zyg)
        finally:
            os._exit(1)
    _reseed()  # after the fork: the worker cannot know the generator the tests draw from
    os.close(call_r)
    os.close(reply_w)
    os.set_blocking(call_w, False)  # calls are written against the deadline
    tests = _read_msg(stdin_fd, deadline)
    os.close(stdin_fd)
    verdict_fd = int(tests["verdict_fd"])
    verdict = {"status": "failed", "detail": "", "applied": []}
    try:
        # 1. Before any of the program's code ran: confined, or setup failed.
        hello = _read_reply(reply_r, deadline)
        if type(hello) is not dict:
            raise _WorkerGone("protocol violation")
        if "fatal" in hello:
            verdict.update(status="sandbox_error", detail=str(hello["fatal"])[:500])
        elif hello.get("confined") is not True:
            raise _WorkerGone("protocol violation")
        elif report:
            verdict.update(status="probe", detail="", pid_in_sandbox=os.getpid(), worker_uid=hello.get("uid"),
                           applied=applied + [a for a in hello.get("applied", []) if isinstance(a, str)])
        else:
            # 2. After the program loaded (everything from here is the program's word).
            loaded = _read_reply(reply_r, deadline)
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
    faults = []
    proxy = _make_proxy(job["entry_point"], call_w, reply_r, deadline, builtins_ns, faults)
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
    if faults:
        raise faults[0]


# ------------------------------------------------------------------- zygote
# A zygote is this script started once per checker thread inside the same
# namespaces as a per-program launch (``unshare``), with the standard library
# modules the tests need already imported and the Landlock read rules already
# built. It never runs a program: for each one it forks the supervisor, pid 1
# of a fresh pid namespace, which enters fresh mount, user, IPC and UTS
# namespaces, mounts its own /proc and tmpfs, and then runs :func:`supervise`
# as a per-program launcher does.
#
# Where the seccomp filter exists (x86-64, arm64), the network namespace is
# the zygote's, as fresh as a per-program one (no interface up: no network
# at all), and held by one program at a time: the zygote starts a program
# only once the previous one's pid namespace is empty. A program can leave
# nothing in it for the next: it has no capability over it (its user
# namespace does not own it; the worker drops every capability anyway), so
# no interface, route or setting changes, and it cannot create a socket at
# all (the filter refuses socket and socketpair; a worker without its filter
# never runs). Unlike SysV IPC objects, which outlive their creator: hence a
# fresh IPC namespace per program. A network namespace per program would
# cost more than a millisecond of CPU each (creation, and the kernel's
# deferred clean-up) for no isolation a program could tell apart. Elsewhere
# each program gets its own, as in a per-program launch.
_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
# A supervisor's descriptors: 0 the job (the harness writes the frames), 1
# /dev/null, 2 the harness's diagnostics file, then these.
ZYGOTE_VERDICT_FD = 3
_ZYGOTE_RULESET_FD = 4
ZYGOTE_WORKDIR = "w"  # in the zygote's directory: each program mounts its tmpfs here

# Run once by the zygote (trusted code), so that its children find the
# interpreter's lazily built state already built rather than each building
# (and copying) its own: the compiler's AST types alone are a millisecond.
_WARM_UP = '''
def f(a, b=1, *args, **kw):
    """Doc."""
    x = [i * 2 for i in range(3) if i] + list(args)
    y = {k: v for k, v in kw.items()}
    try:
        assert a == b, "%s != %s" % (a, b)
    except AssertionError as exc:
        z = str(exc)
    return abs(a - b) < 1e-6, sorted(x), len(y), (lambda t: t)(1), f"{a!r}"
def check(candidate):
    assert candidate(1, 1)[0]
    assert not candidate(1.0, 2.5, 3, k=4)[0]
check(f)
'''


def zygote(ctl_fd=0):
    """Serve the harness on ``ctl_fd`` (a SOCK_SEQPACKET socket), one program
    at a time. Messages: a configuration frame first (``read_paths``,
    ``sys_path``, ``preload``), answered with ``ready``; then
    ``run`` with three descriptors (the job's read end, the verdict's write
    end, the diagnostics file), answered ``S <pid>`` (the supervisor started)
    or ``E <why>``; then ``end``, answered ``ended`` once that supervisor,
    and with it its pid namespace, is gone. End of file: exit, which (pid 1
    of the zygote's namespace) kills whatever is left."""
    import gc
    import socket

    sock = socket.socket(fileno=ctl_fd)
    try:
        cfg = decode(sock.recv(1 << 22))
        _prctl(_PR_SET_DUMPABLE, 0)
        __import__("fcntl")  # the children's (see _zygote_supervisor): imported once, here
        for name in cfg.get("preload", ()):
            try:
                __import__(name)
            except Exception:
                pass
        sys.path.extend(p for p in cfg.get("sys_path", ()) if isinstance(p, str))
        read_paths = _unpack_read_paths(cfg["read_paths"])
        ruleset, note = None, ""
        if landlock_abi() > 0:
            try:
                ruleset = zygote_read_ruleset(read_paths, os.getcwd())
            except OSError as exc:
                note = "no prebuilt Landlock rules: %s" % exc
        if os.uname().machine in _AUDIT_ARCH:
            seccomp_filter()
        pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        zyg = {"ruleset": ruleset, "read_paths": read_paths, "readable": _readable(read_paths),
               "outer_uid": _outer_uid(), "pidns": pidns}
        import ctypes

        libc = _get_libc()
        libc.unshare, libc.setns, libc.mount, libc.prctl, libc.syscall  # looked up once, here
        for _ in range(2):
            exec(compile(_WARM_UP, "<warm-up>", "exec"), {"__name__": "__warm_up__"})
        _landlock_structs()
        ctypes.c_uint32 * 2, ctypes.c_uint32 * 6  # drop_capabilities' array types: cached from now on
        gc.collect()
        gc.freeze()  # the children's collections leave the zygote's objects (and pages) alone
        sock.send(encode({"ready": True, "pid": os.getpid(), "note": note}))
    except Exception as exc:
        try:
            sock.send(encode({"ready": False, "note": "%s: %s" % (type(exc).__name__, exc)}))
        finally:
            os._exit(1)
    current = None  # the supervisor of the program in flight
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 64, 4)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)  # the harness is gone
        if current is not None:  # "end", or a "run" that was never ended
            _end_child(current)
            current = None
        if data == b"run" and len(fds) == 3:
            reply, current = _zygote_fork(sock, fds, zyg)
        else:
            for fd in fds:
                os.close(fd)
            reply = b"ended" if data == b"end" else b"E bad request"
        try:
            sock.send(reply)
        except OSError:
            os._exit(0)


def _end_child(pid):
    """Kill a supervisor (pid 1 of its namespace: the kernel kills everything
    in it) and reap it; its namespace is empty once waitpid returns."""
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _zygote_fork(sock, fds, zyg):
    """Fork the supervisor into a fresh pid namespace. Returns (reply, its pid or None)."""
    import ctypes

    libc = _get_libc()
    try:
        if libc.unshare(ctypes.c_int(_CLONE_NEWPID)) != 0:
            return b"E unshare: %s" % os.strerror(ctypes.get_errno()).encode(), None
        try:
            pid = os.fork()
        except OSError as exc:
            return b"E fork: %s" % str(exc).encode(), None
        finally:
            # Our own children's namespace again (the next program gets a new one).
            libc.setns(zyg["pidns"], ctypes.c_int(_CLONE_NEWPID))
        if pid == 0:
            try:
                _zygote_supervisor(sock, fds, zyg)
            finally:
                os._exit(1)
        return b"S %d" % pid, pid
    finally:
        for fd in fds:
            os.close(fd)


def _zygote_supervisor(sock, fds, zyg):
    """pid 1 of a fresh pid namespace (trusted code until the worker is
    forked): the job's descriptors in place, everything else closed, its own
    mount namespace with its own /proc and tmpfs, then fresh user, IPC and
    UTS namespaces (the network one is the zygote's where the seccomp filter
    refuses sockets: see above), then the job as a per-program launcher runs
    it."""
    import ctypes
    import fcntl

    sock.detach()  # its descriptor is replaced below: the object must not close it later
    ruleset = zyg["ruleset"]
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        moves = [(fds[0], 0), (devnull, 1), (fds[2], 2), (fds[1], ZYGOTE_VERDICT_FD)]
        if ruleset is not None:
            moves.append((ruleset, _ZYGOTE_RULESET_FD))
        moves = [(fcntl.fcntl(src, fcntl.F_DUPFD, 64), dst) for src, dst in moves]  # out of the way first
        for src, dst in moves:
            os.dup2(src, dst)
    except Exception as exc:  # the harness must hear of it: this is no program's doing
        _write_msg(fds[1], {"status": "zygote_error", "detail": "descriptors: %s" % exc})
        os._exit(1)
    os.closerange(_ZYGOTE_RULESET_FD + (ruleset is not None), 1 << 16)  # the zygote's own, the copies
    zyg = dict(zyg, ruleset=_ZYGOTE_RULESET_FD if ruleset is not None else None, pidns=None)
    # The socket module is the zygote's: a program must import its own (the audit hook refuses it).
    for name in ("socket", "_socket", "array", "selectors"):
        sys.modules.pop(name, None)
    try:
        libc = _get_libc()
        if libc.unshare(ctypes.c_int(_CLONE_NEWNS)) != 0:
            raise OSError(ctypes.get_errno(), "unshare(mount)")
        libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None)
        if libc.mount(b"proc", b"/proc", b"proc", ctypes.c_ulong(_MS_NOSUID | _MS_NODEV | _MS_NOEXEC), None) != 0:
            raise OSError(ctypes.get_errno(), "mount /proc")
        os.chdir(ZYGOTE_WORKDIR)
        job = _read_msg(0, None)
        applied = _private_workdir(job["limits"])  # needs the zygote's user namespace: before the next step
        flags = _CLONE_NEWUSER | _CLONE_NEWIPC | _CLONE_NEWUTS
        if os.uname().machine not in _AUDIT_ARCH:  # no seccomp filter: sockets are possible
            flags |= _CLONE_NEWNET
        if libc.unshare(ctypes.c_int(flags)) != 0:
            raise OSError(ctypes.get_errno(), "unshare(user, ipc, uts)")
        for name, data in (("setgroups", b"deny"), ("uid_map", b"0 0 1"), ("gid_map", b"0 0 1")):
            fd = os.open("/proc/self/" + name, os.O_WRONLY)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    except Exception as exc:
        _write_msg(ZYGOTE_VERDICT_FD, {"status": "zygote_error", "detail": "%s: %s" % (type(exc).__name__, exc)})
        os._exit(1)
    supervise(job, 0, dict(zyg, applied=applied))
    os._exit(0)


def main():
    if sys.argv[1:] == ["--zygote"]:
        zygote(0)
        os._exit(0)
    # Exact reads, no buffering: the tests' frame must still be in the pipe,
    # not in this process's memory, when the worker is forked.
    job = _read_msg(0, None)
    supervise(job, 0)
    os._exit(0)


if __name__ == "__main__":
    main()
