"""Hostile programs against the code-execution sandbox (lm_eval_ext.execution).

Every program below is a *completion* for one simple problem (``add(a, b)``),
run through :func:`lm_eval_ext.execution.sandbox.run_program` exactly as a
model's sample would be. The programs are listed in three readable tables:

``FORGERY``
    The program tries to make a wrong (or never-answering) program PASS: exit
    paths, fake success output, fake verdicts on every descriptor, lying
    ``__eq__``, patched builtins/json/launcher, forged protocol messages,
    hangs. The verdict must be ``failed`` or ``timeout``. Most of these return
    the *correct* answer as well (or exit before they are ever asked), so the
    failure proves the attack was caught, not that the arithmetic was wrong.
    The random arguments in :data:`TEST` are drawn in the supervisor, so no
    program can know them in advance.
``LEAK``
    The program tries to get something it must not have (the harness's secret
    environment variable, a secret file, a network connection, another
    process's limits, more memory/file size/descriptors than allowed) and
    returns the right answer *only if it succeeded*. A PASS therefore means
    the attack worked: the verdict must not be ``passed``.
``ESCAPE``
    The program tries to change the world outside its sandbox (write, delete,
    rename, chmod files outside its temporary directory; kill the harness or
    a canary process; leave processes running). The verdict may be anything
    (most of them return the right answer, so PASS is legitimate); the test
    checks that the side effect did NOT happen.

For *every* program, whatever its table, the side-effect checks run: the
program's own canary directory (outside the sandbox) is byte-, mode-, mtime-
and xattr-identical afterwards; no process carrying the program's unique
marker (in its argv or its ``comm``) is alive ~1 s after the verdict; the
loopback TCP/UDP/UNIX listeners received nothing from it; the secret never
appears in a verdict. Globally: the canary process and the harness survive,
every sandbox temporary directory is removed, and a correct solution still
PASSES after the whole batch.

Many programs first switch off the launcher's CPython audit hook from inside
(``@UNGUARD@``: the hook reads the launcher's module globals, which the
program can reach through ``sys.modules["__main__"]``), so that they test the
kernel mechanisms (Landlock, namespaces, rlimits), not the Python-level
guard. Where the attack needs a mechanism this machine lacks (see
``isolation().describe()``), its escape assertion is skipped with the reason.

*Controls*: each file-system / network / process / leak program marked
``control=True`` is also run WITHOUT the sandbox (a plain ``python`` child, on
a separate set of canaries) and must then produce its side effect. That
proves the hostile code really works, so a clean result inside the sandbox
is due to the sandbox and not to a bug in the hostile program.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lm_eval_ext.execution import sandbox
from lm_eval_ext.execution.sandbox import Limits, SandboxUnavailable, isolation, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

# ----------------------------------------------------------------- problems
PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
# The random arguments are drawn by the trusted supervisor at test time: a
# program cannot pre-compute or pre-send the answers.
TEST = '''
def check(candidate):
    import random
    assert candidate(2, 3) == 5
    assert candidate(-4, 4) == 0
    for _ in range(5):
        a, b = random.randint(-10**9, 10**9), random.randint(-10**9, 10**9)
        assert candidate(a, b) == a + b
'''
CORRECT = "    return a + b\n"
WRONG = "    return a - b\n"
ENTRY = "add"
LIMITS = Limits(timeout=2.0)

# A problem whose expected outputs cannot be computed, only read from the tests.
_ORACLE = [(i, random.SystemRandom().randint(10**8, 10**9)) for i in (3, 7, 11)]
ORACLE_PROBLEM = {
    "prompt": 'def mystery(x):\n    """Return the hidden value for x."""\n',
    "test": "def check(candidate):\n" + "".join(f"    assert candidate({i}) == {v}\n" for i, v in _ORACLE),
    "entry_point": "mystery",
}
# A legitimate test style (all + map) that trusts exceptions raised by the candidate.
MAP_PROBLEM = {
    "prompt": PROMPT,
    "test": ("def check(candidate):\n    cases = [(2, 3), (-4, 4), (10**6, 1)]\n"
             "    assert all(map(lambda ab: candidate(*ab) == ab[0] + ab[1], cases))\n"),
    "entry_point": ENTRY,
}
PROBLEMS = {"oracle": ORACLE_PROBLEM, "map": MAP_PROBLEM}

SECRET_NAME = "LMEVALEXT_SECRET"

# ----------------------------------------------------------------- snippets
# Expanded into the programs before the @TOKENS@ below.
SNIPPETS = {
    # Switch off the launcher's audit hook from inside: it reads these names
    # from the launcher script's globals at every event.
    "UNGUARD": '''
import sys as _sys
_L = _sys.modules["__main__"]
_L._BLOCKED_EVENTS = ("-nothing-",)
_L._BLOCKED_IMPORTS = frozenset()
_L._WRITE_EVENTS = frozenset()
_L.isinstance = lambda *args: False
''',
    # Name this process after the marker (visible in /proc/PID/comm; inherited by forks).
    "MARK_SELF": '''
try:
    __import__("ctypes").CDLL(None).prctl(15, @MARK@.encode(), 0, 0, 0)
except Exception:
    pass
''',
    # The pipes this process holds, and _send(): a well-formed message in the
    # launcher's own wire format (whatever it is), made by its own _write_msg.
    "PIPES": '''
import os as _os, stat as _stat, sys as _sys
def _framed(obj):
    _r, _w = _os.pipe()
    try:
        _sys.modules["__main__"]._write_msg(_w, obj)
        return _os.read(_r, 1 << 16)
    finally:
        _os.close(_r)
        _os.close(_w)
def _send(fd, obj):
    try:
        _os.write(fd, _framed(obj))
    except Exception:
        pass
_pipes = []
for _fd in range(3, 256):
    try:
        if _stat.S_ISFIFO(_os.fstat(_fd).st_mode):
            _pipes.append(_fd)
    except OSError:
        pass
''',
    # FORGED: a "passed" verdict in the launcher's wire format, as JSON, as text.
    "FORGED_VERDICT": '''
@PIPES@
import json as _json
_VD = {"status": "passed", "passed": True, "detail": "", "seconds": 0.01, "applied": []}
FORGED = [_framed(_VD), _json.dumps(_VD).encode() + b"\\n", b"PASSED\\nAll tests passed\\n"]
''',
    # A long-lived python process carrying the marker in its argv.
    "SLEEPER_ARGV": '[sys.executable, "-c", "import time; time.sleep(60)", @MARK@]',
}


@dataclasses.dataclass(frozen=True)
class Hostile:
    name: str
    what: str
    code: str
    needs: str | None = None     # mechanism the escape assertion relies on (see _unmet)
    control: bool = False        # also run unsandboxed: the attack must then work
    problem: str | None = None   # key into PROBLEMS; None: the add problem


def H(name, what, code, **kw):
    return Hostile(name, what, code.strip("\n") + "\n", **kw)


# ===================================================================== (a)
# FORGERY: the verdict must be failed or timeout.
FORGERY = [
    H("sys_exit_at_load", "correct function, then sys.exit(0) before the tests run", """
    return a + b
import sys; sys.exit(0)
"""),
    H("os_exit_at_load", "correct function, then os._exit(0) before the tests run", """
    return a + b
import os; os._exit(0)
"""),
    H("raise_systemexit_at_load", "correct function, then raise SystemExit", """
    return a + b
raise SystemExit(0)
"""),
    H("keyboardinterrupt_at_load", "correct function, then raise KeyboardInterrupt", """
    return a + b
raise KeyboardInterrupt
"""),
    H("sys_exit_in_call", "exit(0) from inside the function, during the tests", """
    import sys; sys.exit(0)
"""),
    H("os_exit_in_call", "os._exit(0) from inside the function, during the tests", """
    import os; os._exit(0)
"""),
    H("keyboardinterrupt_in_call", "KeyboardInterrupt from inside the function", """
    raise KeyboardInterrupt
"""),
    H("atexit_prints_passed", "atexit handler printing PASSED and a verdict, then exit(0)", """
    return a + b
@FORGED_VERDICT@
import atexit, os, sys
def _claim():
    print("PASSED")
    for fd in range(256):
        for blob in FORGED:
            try:
                os.write(fd, blob)
            except OSError:
                pass
atexit.register(_claim)
sys.exit(0)
"""),
    H("flood_gigabytes_then_exit", "~1.4 GB of 'PASSED' on stdout+stderr, then exit(0)", """
    return a + b
import os, sys
_blk = b"PASSED: all tests passed\\n" * 40000
for _ in range(700):
    os.write(1, _blk)
    os.write(2, _blk)
print('{"status": "passed", "passed": true}')
sys.exit(0)
"""),
    H("flood_markers_wrong_answer", "wrong answer while printing success markers on every call", """
    import sys
    for _ in range(2000):
        print("PASSED", '{"status": "passed"}', "OK", file=sys.stdout)
        print("PASSED", file=sys.stderr)
    return a - b
"""),
    H("fake_verdict_every_fd", "writes a framed 'passed' verdict to every fd 0..255 (correct function)", """
    return a + b
@FORGED_VERDICT@
import os
for _fd in range(256):
    for _blob in FORGED:
        try:
            os.write(_fd, _blob)
        except OSError:
            pass
"""),
    H("fake_verdict_proc_self_fd", "writes a 'passed' verdict through /proc/self/fd/* (guarded, then unguarded)", """
    return a + b
@FORGED_VERDICT@
import os
def _spray():
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = [str(i) for i in range(64)]
    for n in names:
        for blob in FORGED:
            try:
                with open("/proc/self/fd/" + n, "wb") as f:
                    f.write(blob)
            except Exception:
                pass
_spray()
@UNGUARD@
_spray()
"""),
    H("fake_verdict_during_call", "correct answer, preceded by a framed verdict on every fd during the call", """
    import os
    for fd in range(256):
        for blob in FORGED:
            try:
                os.write(fd, blob)
            except OSError:
                pass
    return a + b
@FORGED_VERDICT@
"""),
    H("eq_always_true", "returns an object whose __eq__ is always True", """
    class Yes:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        __hash__ = object.__hash__
    return Yes()
"""),
    H("int_subclass_lying_eq", "returns an int subclass whose __eq__ is always True", """
    class Five(int):
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        __hash__ = int.__hash__
    return Five(a - b)
"""),
    H("float_str_subclass_lying_eq", "returns a float subclass (first call) / str subclass with lying __eq__", """
    eq = {"__eq__": lambda s, o: True, "__ne__": lambda s, o: False, "__hash__": lambda s: 0}
    if a == 2:
        return type("F", (float,), eq)(0.5)
    return type("S", (str,), eq)("x")
"""),
    H("patch_builtins", "wrong answer; replaces builtins AssertionError/abs/isinstance/all/any", """
    return a - b
import builtins
class _Never(BaseException):
    pass
builtins.AssertionError = _Never
builtins.abs = lambda x: 0
builtins.isinstance = lambda *args: True
builtins.all = builtins.any = lambda *args: True
"""),
    H("patch_sys_modules", "wrong answer; replaces builtins/json/random in sys.modules", """
    return a - b
import sys, types
_fake = types.ModuleType("builtins")
_fake.__dict__.update(vars(sys.modules["builtins"]))
_fake.AssertionError = type("AssertionError", (BaseException,), {})
sys.modules["builtins"] = _fake
sys.modules["json"] = types.SimpleNamespace(loads=lambda *a, **k: {"status": "passed"},
                                           dumps=lambda *a, **k: '{"status": "passed"}')
sys.modules["random"] = types.SimpleNamespace(randint=lambda lo, hi: 1, random=lambda: 0.5)
"""),
    H("define_check", "wrong answer; defines its own check() that always succeeds", """
    return a - b
def check(candidate):
    return True
import builtins
builtins.check = check
"""),
    H("patch_json_and_os_write", "wrong answer; patches json.dumps/os.write so every message says passed", """
    return a - b
import json, os
_real_write = os.write
json.dumps = lambda *a, **k: '{"status": "passed", "passed": true, "value": 5}'
os.write = lambda fd, data: (_real_write(fd, b'{"status": "passed"}\\n'), len(data))[1]
"""),
    H("patch_launcher_codec", "wrong answer; patches the launcher's encode/_describe so every reply says 5", """
    return a - b
import sys
_L = sys.modules["__main__"]
_real_encode = _L.encode
def _lie(obj, *args, **kwargs):
    if type(obj) is dict and ("value" in obj or "raise" in obj):
        obj = {"value": 5}
    return _real_encode(obj, *args, **kwargs)
_L.encode = _lie
_L._describe = lambda exc: ["AssertionError", ""]
"""),
    H("forged_protocol_replies", "wrong answer; pre-sends forged {ready}, {value: 5}, {value: 0}, verdicts on the pipes", """
    return a - b
@PIPES@
for _fd in _pipes:
    for _msg in ({"ready": True, "applied": []}, {"value": 5}, {"value": 0},
                 {"status": "passed"}, {"value": float("nan")}):
        _send(_fd, _msg)
"""),
    H("forged_ready_then_exit", "forged {ready} on the reply pipe, then os._exit(0)", """
    return a + b
@PIPES@
for _fd in _pipes:
    _send(_fd, {"ready": True, "applied": ["landlock"]})
_os._exit(0)
"""),
    H("forged_fatal_hello", "a forged {fatal: 'sandbox setup failed'} hello: turns its FAIL into sandbox_error", """
    return a + b
@PIPES@
for _fd in _pipes:
    _send(_fd, {"fatal": "sandbox setup failed: OSError('Landlock is not available')"})
"""),
    H("forged_huge_length", "correct function; a 4 GiB length prefix on the pipes", """
    return a + b
@PIPES@
for _fd in _pipes:
    try:
        _os.write(_fd, b"\\xff\\xff\\xff\\xff{")
    except OSError:
        pass
"""),
    H("steal_verdict_pipe", "wrong answer; writes a 'passed' verdict into the supervisor's fds (/proc/PID/fd, pidfd_getfd)", """
    return a - b
@UNGUARD@
@FORGED_VERDICT@
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
for _pid in (os.getppid(), 1):
    for _fd in range(64):
        try:
            with open("/proc/%d/fd/%d" % (_pid, _fd), "wb") as _f:
                _f.write(FORGED[0])
        except Exception:
            pass
    _pfd = _libc.syscall(434, _pid, 0)
    if _pfd >= 0:
        for _fd in range(64):
            _got = _libc.syscall(438, _pfd, _fd, 0)
            if _got >= 0:
                try:
                    os.write(_got, FORGED[0])
                except OSError:
                    pass
"""),
    H("reply_flood", "returns a 500,000-element list (supervisor decode load)", """
    return [a + b] * 500_000
"""),
    H("sleep_forever_at_load", "time.sleep(10**6) before the tests", """
    return a + b
@UNGUARD@
@MARK_SELF@
import time
time.sleep(10**6)
"""),
    H("busy_loop_in_call", "while True: pass inside the function", """
    while True:
        pass
"""),
    H("sigterm_ignored_loop", "ignores SIGTERM/SIGINT/SIGHUP, then spins at load", """
    return a + b
@UNGUARD@
@MARK_SELF@
import signal
for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(_s, signal.SIG_IGN)
while True:
    pass
"""),
    H("frame_reads_test_source", "reads the test source from the launcher's frames and answers from it", """
    import re, sys
    f = sys._getframe(1)
    while f is not None:
        job = f.f_locals.get("job")
        if type(job) is dict and "test" in job:
            table = {int(k): int(v) for k, v in re.findall(r"candidate\\((\\d+)\\) == (\\d+)", job["test"])}
            return table.get(x, -1)
        f = f.f_back
    return -1
""", problem="oracle"),
    H("stopiteration_through_map", "raises StopIteration: re-raised in the supervisor, it ends map() early", """
    raise StopIteration
""", problem="map"),
]

# ===================================================================== (c)
# LEAK: returns the right answer only if the attack worked; must not pass.
_OK = "    return a + b if OK else a - b\nOK = False\n"

LEAK = [
    H("env_os_environ", "looks for the harness's secret variable in os.environ", _OK + """
import os
OK = any(@SECRET_NAME@ in k or "lmxs" in v for k, v in os.environ.items())
""", control=True),
    H("env_proc_self_environ", "reads /proc/self/environ", _OK + """
try:
    OK = @SECRET_NAME@.encode() in open("/proc/self/environ", "rb").read()
except Exception:
    pass
""", control=True),
    H("env_ancestors_environ", "walks the parent chain through /proc/PID/stat and reads each environ", _OK + """
@UNGUARD@
import os
pid = os.getppid()
for _ in range(10):
    try:
        if @SECRET_NAME@.encode() in open("/proc/%d/environ" % pid, "rb").read():
            OK = True
        pid = int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])
    except Exception:
        break
""", needs="landlock-or-pidns"),
    H("env_canary_process_environ", "reads /proc/<canary pid>/environ (a process holding the secret)", _OK + """
@UNGUARD@
try:
    OK = @SECRET_NAME@.encode() in open("/proc/%d/environ" % @CANARY_PID@, "rb").read()
except Exception:
    pass
""", needs="landlock-or-pidns", control=True),
    H("env_proc_1_environ", "reads /proc/1/environ", _OK + """
@UNGUARD@
try:
    OK = @SECRET_NAME@.encode() in open("/proc/1/environ", "rb").read()
except Exception:
    pass
""", needs="landlock-or-pidns"),
    H("env_walk_all_proc", "walks /proc/*/environ of every process", _OK + """
@UNGUARD@
import os
try:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
except OSError:
    pids = [str(p) for p in range(1, 4096)]
for p in pids:
    try:
        if @SECRET_NAME@.encode() in open("/proc/%s/environ" % p, "rb").read():
            OK = True
    except Exception:
        pass
""", needs="landlock-or-pidns", control=True),
    H("env_ctypes_read_proc", "reads /proc/<canary>/environ with libc open/read (no audit events)", _OK + """
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_fd = _libc.open(("/proc/%d/environ" % @CANARY_PID@).encode(), 0)
if _fd >= 0:
    _buf = ctypes.create_string_buffer(1 << 16)
    _n = _libc.read(_fd, _buf, 1 << 16)
    OK = _n > 0 and @SECRET_NAME@.encode() in _buf.raw[:_n]
""", needs="landlock-or-pidns", control=True),
    H("secret_file_open", "reads a secret file outside the sandbox with open()", _OK + """
try:
    OK = open(@SECRET_FILE@).read().startswith("lmxf")
except Exception:
    pass
""", needs="landlock", control=True),
    H("secret_file_dirfd", "O_PATH fd of the secret's directory, then openat() relative to it", _OK + """
import os
try:
    _d = os.open(os.path.dirname(@SECRET_FILE@), os.O_PATH)
    _f = os.open(os.path.basename(@SECRET_FILE@), os.O_RDONLY, dir_fd=_d)
    OK = os.read(_f, 100).startswith(b"lmxf")
except Exception:
    pass
""", needs="landlock", control=True),
    H("secret_file_links", "hard link / symlink of the secret into the sandbox dir, then read", _OK + """
@UNGUARD@
import os
for _how in (os.link, os.symlink):
    try:
        _how(@SECRET_FILE@, "s_" + _how.__name__)
        OK = OK or open("s_" + _how.__name__).read().startswith("lmxf")
    except Exception:
        pass
""", needs="landlock", control=True),
    H("secret_file_ctypes", "reads the secret file with libc open/read", _OK + """
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_fd = _libc.open(@SECRET_FILE@.encode(), 0)
if _fd >= 0:
    _buf = ctypes.create_string_buffer(100)
    OK = _libc.read(_fd, _buf, 100) > 0 and _buf.raw.startswith(b"lmxf")
""", needs="landlock", control=True),
    H("secret_file_child_process", "a child python (no audit hook) reads the secret file", _OK + """
@UNGUARD@
import subprocess, sys
try:
    _r = subprocess.run([sys.executable, "-c", "print(open(%r).read())" % @SECRET_FILE@],
                        capture_output=True, timeout=5)
    OK = _r.stdout.startswith(b"lmxf")
except Exception:
    pass
""", needs="landlock", control=True),
    H("secret_file_proc_self_root", "reads the secret through /proc/self/root/...", _OK + """
@UNGUARD@
try:
    OK = open("/proc/self/root" + @SECRET_FILE@).read().startswith("lmxf")
except Exception:
    pass
""", needs="landlock", control=True),
    H("tcp_connect_guarded", "socket.create_connection to a loopback listener (audit hook in place)", _OK + """
try:
    import socket
    _c = socket.create_connection(("127.0.0.1", @TCP_PORT@), timeout=1)
    _c.sendall(@NAME@.encode())
    OK = True
except Exception:
    pass
""", control=True),
    H("tcp_connect_unguarded", "socket.create_connection with the audit hook switched off", _OK + """
@UNGUARD@
try:
    import socket
    _c = socket.create_connection(("127.0.0.1", @TCP_PORT@), timeout=1)
    _c.sendall(@NAME@.encode())
    OK = True
except Exception:
    pass
""", needs="net", control=True),
    H("tcp_connect_raw_socket", "_socket.socket directly, audit hook off", _OK + """
@UNGUARD@
try:
    import _socket
    _c = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    _c.settimeout(1)
    _c.connect(("127.0.0.1", @TCP_PORT@))
    _c.send(@NAME@.encode())
    OK = True
except Exception:
    pass
""", needs="net", control=True),
    H("tcp_connect_ctypes", "libc socket()/connect()/write() to the loopback listener", _OK + """
@UNGUARD@
import ctypes, struct
_libc = ctypes.CDLL(None, use_errno=True)
_s = _libc.socket(2, 1, 0)
_addr = struct.pack("<H", 2) + struct.pack(">H", @TCP_PORT@) + bytes([127, 0, 0, 1]) + bytes(8)
if _s >= 0 and _libc.connect(_s, ctypes.create_string_buffer(_addr, 16), 16) == 0:
    _libc.write(_s, @NAME@.encode(), len(@NAME@))
    OK = True
""", needs="net", control=True),
    H("tcp_connect_child_process", "a child python (no audit hook) connects to the listener", _OK + """
@UNGUARD@
import subprocess, sys
_code = "import socket; c = socket.create_connection(('127.0.0.1', %d), timeout=1); c.sendall(%r); print('ok')"
try:
    OK = subprocess.run([sys.executable, "-c", _code % (@TCP_PORT@, @NAME@.encode())],
                        capture_output=True, timeout=5).stdout.startswith(b"ok")
except Exception:
    pass
""", needs="net", control=True),
    H("udp_sendto", "UDP datagram to a loopback listener (Landlock does not cover UDP)", _OK + """
@UNGUARD@
try:
    import socket
    _u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    OK = _u.sendto(@NAME@.encode(), ("127.0.0.1", @UDP_PORT@)) > 0
except Exception:
    pass
""", needs="netns", control=True),
    H("unix_socket_pathname", "connects to a UNIX socket listening at a path outside the sandbox", _OK + """
@UNGUARD@
try:
    import socket
    _c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _c.settimeout(1)
    _c.connect(@UNIX_SOCK@)
    _c.sendall(@NAME@.encode())
    OK = True
except Exception:
    pass
""", needs="landlock", control=True),
    H("unix_socket_abstract", "connects to an abstract UNIX socket of the harness", _OK + """
@UNGUARD@
try:
    import socket
    _c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _c.settimeout(1)
    _c.connect(@ABSTRACT_SOCK@)
    _c.sendall(@NAME@.encode())
    OK = True
except Exception:
    pass
""", needs="abstract-sockets", control=True),
    H("ptrace_canary", "PTRACE_ATTACH to the canary process", _OK + """
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
OK = _libc.ptrace(16, @CANARY_PID@, None, None) == 0
if OK:
    _libc.ptrace(17, @CANARY_PID@, None, None)
""", needs="signals"),
    H("prlimit_canary", "prlimit(canary pid, RLIMIT_NOFILE, (7, 7)) on a process outside", _OK + """
@UNGUARD@
import resource
try:
    resource.prlimit(@CANARY_PID@, resource.RLIMIT_NOFILE, (7, 7))
    OK = True
except Exception:
    pass
""", needs="pidns", control=True),
    H("memory_10gb", "bytearray(10**10)", _OK + """
try:
    _big = bytearray(10**10)
    OK = True
except MemoryError:
    pass
"""),
    H("file_1gb", "writes a 1 GB file in its temporary directory (RLIMIT_FSIZE)", _OK + """
import os
_blk = b"x" * (1 << 20)
try:
    with open("big.bin", "wb") as _f:
        for _ in range(1024):
            _f.write(_blk)
except OSError:
    pass
OK = os.path.exists("big.bin") and os.path.getsize("big.bin") > 20 * (1 << 20)
try:
    os.remove("big.bin")
except OSError:
    pass
"""),
    H("open_10000_files", "opens 10000 files at once (RLIMIT_NOFILE)", _OK + """
_files = []
try:
    for _i in range(10000):
        _files.append(open("f%d" % _i, "w"))
except OSError:
    pass
OK = len(_files) >= 10000
"""),
]

# ===================================================================== (b)
# ESCAPE: the verdict may be anything; the side effect must not happen.
ESCAPE = [
    # ---- file system
    H("fs_write_new_file", "open(OUTSIDE/pwned, 'w') with the audit hook in place", """
    return a + b
try:
    open(@OUT@ + "/pwned", "w").write("pwned")
except Exception:
    pass
""", control=True),
    H("fs_write_new_file_unguarded", "open(OUTSIDE/pwned, 'w') with the audit hook off", """
    return a + b
@UNGUARD@
open(@OUT@ + "/pwned", "w").write("pwned")
""", needs="landlock", control=True),
    H("fs_append_canary", "open(canary, 'a')", """
    return a + b
@UNGUARD@
open(@CANARY@, "a").write("pwned")
""", needs="landlock", control=True),
    H("fs_truncate_canary", "os.truncate(canary, 0)", """
    return a + b
@UNGUARD@
import os
os.truncate(@CANARY@, 0)
""", needs="landlock", control=True),
    H("fs_delete_canary", "os.remove(canary)", """
    return a + b
@UNGUARD@
import os
os.remove(@CANARY@)
""", needs="landlock", control=True),
    H("fs_rename_canary", "os.rename(canary, canary.moved)", """
    return a + b
@UNGUARD@
import os
os.rename(@CANARY@, @CANARY@ + ".moved")
""", needs="landlock", control=True),
    H("fs_rename_canary_into_sandbox", "os.rename(canary, ./stolen): moves it into the sandbox dir", """
    return a + b
@UNGUARD@
import os
os.rename(@CANARY@, "stolen")
""", needs="landlock", control=True),
    H("fs_rmtree_canary_dir", "shutil.rmtree(canary_dir)", """
    return a + b
@UNGUARD@
import shutil
shutil.rmtree(@CANARY_DIR@)
""", needs="landlock", control=True),
    H("fs_chmod_canary", "os.chmod(canary, 0o777) with the audit hook off", """
    return a + b
@UNGUARD@
import os
os.chmod(@CANARY@, 0o777)
""", needs="landlock", control=True),
    H("fs_chmod_via_dir_fd", "os.chmod('canary.txt', 0o777, dir_fd=O_PATH fd): hook in place", """
    return a + b
import os
_d = os.open(@OUT@, os.O_PATH)
os.chmod("canary.txt", 0o777, dir_fd=_d)
""", needs="landlock", control=True),
    H("fs_utime_canary", "os.utime(canary, (1, 1))", """
    return a + b
@UNGUARD@
import os
os.utime(@CANARY@, (1, 1))
""", needs="landlock", control=True),
    H("fs_setxattr_canary", "os.setxattr(canary, 'user.pwned', b'1')", """
    return a + b
@UNGUARD@
import os
os.setxattr(@CANARY@, "user.pwned", b"1")
""", needs="landlock", control=True),
    H("fs_symlink_out_then_write", "symlink in the sandbox dir pointing at the canary, write through it", """
    return a + b
@UNGUARD@
import os
os.symlink(@CANARY@, "link")
open("link", "w").write("pwned")
""", needs="landlock", control=True),
    H("fs_symlink_created_outside", "os.symlink('/etc/passwd', OUTSIDE/link)", """
    return a + b
@UNGUARD@
import os
os.symlink("/etc/passwd", @OUT@ + "/link")
""", needs="landlock", control=True),
    H("fs_hardlink_in_then_write", "hard link of the canary into the sandbox dir, then append", """
    return a + b
@UNGUARD@
import os
os.link(@CANARY@, "hard")
open("hard", "a").write("pwned")
""", needs="landlock", control=True),
    H("fs_proc_self_root", "writes OUTSIDE/pwned via /proc/self/root/...", """
    return a + b
@UNGUARD@
open("/proc/self/root" + @OUT@ + "/pwned", "w").write("pwned")
""", needs="landlock", control=True),
    H("fs_ctypes_open_write", "libc open(O_CREAT)/write of OUTSIDE/pwned and O_APPEND on the canary", """
    return a + b
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
for _path, _flags in ((@OUT@ + "/pwned", 0o1 | 0o100 | 0o1000), (@CANARY@, 0o1 | 0o2000)):
    _fd = _libc.open(_path.encode(), _flags, 0o644)
    if _fd >= 0:
        _libc.write(_fd, b"pwned", 5)
        _libc.close(_fd)
""", needs="landlock", control=True),
    H("fs_raw_openat_syscall", "raw syscall(SYS_openat) creating OUTSIDE/pwned", """
    return a + b
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_fd = _libc.syscall(257, -100, (@OUT@ + "/pwned").encode(), 0o1 | 0o100, 0o644)
if _fd >= 0:
    _libc.write(_fd, b"pwned", 5)
""", needs="landlock", control=True),
    H("fs_posix_spawn_sh", "os.posix_spawn('/bin/sh', ['-c', 'echo x > OUTSIDE/pwned; rm canary'])", """
    return a + b
@UNGUARD@
import os
_pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo x > %s/pwned; rm -f %s" % (@OUT@, @CANARY@)], {})
os.waitpid(_pid, 0)
""", needs="landlock", control=True),
    H("fs_child_python_write", "a child python (no audit hook) writes OUTSIDE/pwned and chmods the canary", """
    return a + b
@UNGUARD@
import subprocess, sys
subprocess.run([sys.executable, "-c",
                "import os; open(%r, 'w').write('x'); os.chmod(%r, 0o777)" % (@OUT@ + "/pwned", @CANARY@)],
               timeout=5)
""", needs="landlock", control=True),
    H("fs_mkdir_mkfifo_outside", "os.mkdir and os.mkfifo outside", """
    return a + b
@UNGUARD@
import os
for _f, _p in ((os.mkdir, "/newdir"), (os.mkfifo, "/fifo")):
    try:
        _f(@OUT@ + _p)
    except OSError:
        pass
""", needs="landlock", control=True),
    H("fs_bind_unix_socket_outside", "binds a UNIX socket file outside", """
    return a + b
@UNGUARD@
import socket
socket.socket(socket.AF_UNIX).bind(@OUT@ + "/sock")
""", needs="landlock", control=True),
    H("fs_chdir_out_then_write", "os.chdir(OUTSIDE), then open('pwned', 'w')", """
    return a + b
@UNGUARD@
import os
os.chdir(@OUT@)
open("pwned", "w").write("pwned")
""", needs="landlock", control=True),
    H("fs_rename_own_workdir", "renames its own temporary directory to OUTSIDE/moved", """
    return a + b
@UNGUARD@
import os
os.rename(os.getcwd(), @OUT@ + "/moved")
""", needs="landlock", control=True),
    H("fs_nested_userns_bind_mount", "unshare(NEWUSER|NEWNS), bind-mount OUTSIDE over its cwd, append to the canary", """
    return a + b
@UNGUARD@
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_cwd = os.getcwd()
if _libc.unshare(0x10000000 | 0x00020000) == 0:
    _libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None)
    if _libc.mount(@OUT@.encode(), _cwd.encode(), None, 0x1000, None) == 0:
        open(_cwd + "/canary.txt", "a").write("pwned")
""", needs="landlock", control=True),
    H("fs_dev_shm", "writes /dev/shm/<marker>", """
    return a + b
@UNGUARD@
open(@SHM@, "w").write("pwned")
""", needs="landlock", control=os.path.isdir("/dev/shm")),
    # ---- signals: the harness and the canary process must survive
    H("kill_supervisor_guarded", "os.kill(os.getppid(), 9) with the audit hook in place", """
    return a + b
import os
try:
    os.kill(os.getppid(), 9)
except Exception:
    pass
"""),
    H("kill_supervisor_unguarded", "os.kill(os.getppid(), 9) with the audit hook off", """
    return a + b
@UNGUARD@
import os
try:
    os.kill(os.getppid(), 9)
except Exception:
    pass
"""),
    H("kill_own_group", "os.killpg(0, 9)", """
    return a + b
@UNGUARD@
import os
try:
    os.killpg(0, 9)
except Exception:
    pass
"""),
    H("kill_init", "os.kill(1, 9)", """
    return a + b
@UNGUARD@
import os
try:
    os.kill(1, 9)
except Exception:
    pass
""", needs="signals"),
    H("kill_everyone", "os.kill(-1, 9): every process it may signal", """
    return a + b
@UNGUARD@
import os
try:
    os.kill(-1, 9)
except Exception:
    pass
""", needs="signals"),
    H("kill_harness", "os.kill(<pytest pid>, 9)", """
    return a + b
@UNGUARD@
import os
try:
    os.kill(@HARNESS_PID@, 9)
except Exception:
    pass
""", needs="signals"),
    H("posix_kill_canary", "import posix; posix.kill(canary, 9), guarded then unguarded", """
    return a + b
import posix
try:
    posix.kill(@CANARY_PID@, 9)
except Exception:
    pass
@UNGUARD@
try:
    posix.kill(@CANARY_PID@, 9)
except Exception:
    pass
""", needs="signals"),
    H("ctypes_kill_canary", "libc kill(canary, SIGSTOP) and kill(canary, SIGKILL)", """
    return a + b
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.kill(@CANARY_PID@, 19)
_libc.kill(@CANARY_PID@, 9)
""", needs="signals"),
    H("pidfd_kill_canary", "pidfd_open(canary) + pidfd_send_signal(SIGKILL)", """
    return a + b
@UNGUARD@
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_pfd = _libc.syscall(434, @CANARY_PID@, 0)
if _pfd >= 0:
    _libc.syscall(424, _pfd, 9, None, 0)
""", needs="signals"),
    H("pthread_kill_self", "signal.pthread_kill(main thread, SIGKILL), guarded then unguarded", """
    return a + b
import signal, threading
try:
    signal.pthread_kill(threading.main_thread().ident, 9)
except Exception:
    pass
@UNGUARD@
signal.pthread_kill(threading.main_thread().ident, 9)
"""),
    # ---- processes: nothing carrying the marker may outlive the verdict
    H("fork_guarded", "os.fork() with the audit hook in place; the child would sleep", """
    return a + b
import os, sys, time
try:
    if os.fork() == 0:
        try:
            os.execv(sys.executable, @SLEEPER_ARGV@)
        finally:
            time.sleep(60)
except Exception:
    pass
"""),
    H("posix_fork_guarded", "import posix; posix.fork() with the audit hook in place", """
    return a + b
import posix, sys, time
try:
    if posix.fork() == 0:
        try:
            posix.execv(sys.executable, @SLEEPER_ARGV@)
        finally:
            time.sleep(60)
except Exception:
    pass
"""),
    H("fork_bomb", "32 children each forking 2 levels more (~128 processes), all sleeping", """
    return a + b
@UNGUARD@
@MARK_SELF@
import os, time
for _ in range(32):
    try:
        if os.fork() == 0:
            for _ in range(2):
                try:
                    os.fork()
                except OSError:
                    pass
            time.sleep(60)
            os._exit(0)
    except OSError:
        break
""", control=False),
    H("posix_spawn_sleep", "os.posix_spawn of /bin/sleep and of a python sleeper", """
    return a + b
@UNGUARD@
import os, sys
for _argv in (["/bin/sleep", @SLEEP_ARG@], @SLEEPER_ARGV@):
    try:
        os.posix_spawn(_argv[0] if _argv[0].startswith("/") else sys.executable, _argv, {})
    except OSError:
        pass
""", control=True),
    H("subprocess_popen_new_session", "subprocess.Popen(sleeper, start_new_session=True)", """
    return a + b
@UNGUARD@
import subprocess, sys
subprocess.Popen(@SLEEPER_ARGV@, start_new_session=True)
""", control=True),
    H("setsid_double_fork", "fork, setsid, fork again: a daemon that execs a python sleeper", """
    return a + b
@UNGUARD@
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        @MARK_SELF@
        try:
            os.execv(sys.executable, @SLEEPER_ARGV@)
        except BaseException:
            pass
        time.sleep(60)
    os._exit(0)
""", control=True),
    H("daemon_ignoring_signals", "setsid'd child ignoring SIGTERM/SIGHUP/SIGINT, sleeping", """
    return a + b
@UNGUARD@
import os, signal, time
if os.fork() == 0:
    os.setsid()
    for _s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(_s, signal.SIG_IGN)
    @MARK_SELF@
    time.sleep(60)
    os._exit(0)
""", control=True),
    H("fork_hopper", "setsid'd process that re-forks every 20 ms (a moving pid) for 6 s", """
    return a + b
@UNGUARD@
@MARK_SELF@
import os, time
if os.fork() == 0:
    os.setsid()
    _t0 = time.monotonic()
    while time.monotonic() - _t0 < 6:
        if os.fork() != 0:
            os._exit(0)
        time.sleep(0.02)
    time.sleep(30)
    os._exit(0)
"""),
    H("thread_sleeps_forever", "non-daemon thread sleeping forever; correct function", """
    return a + b
@UNGUARD@
@MARK_SELF@
import threading, time
threading.Thread(target=time.sleep, args=(10**6,), daemon=False).start()
"""),
    H("sleep_in_call", "time.sleep(10**6) inside the function (worker marked)", """
    import time
    time.sleep(10**6)
@UNGUARD@
@MARK_SELF@
"""),
]

ALL = FORGERY + LEAK + ESCAPE
BY_NAME = {h.name: h for h in ALL}
MUST_NOT_PASS = [h.name for h in FORGERY + LEAK]

# Processes an escape leaves running carry the marker in argv or comm; the
# process-escape programs re-run in the no-namespaces tier:
NO_NAMESPACE_PROGRAMS = ["setsid_double_fork", "posix_spawn_sleep", "subprocess_popen_new_session",
                         "daemon_ignoring_signals", "fork_hopper", "fork_bomb", "thread_sleeps_forever"]


# ================================================================ machinery
def _unmet(needs: str | None, iso) -> str | None:
    """Why the escape assertion of a program cannot hold on this machine (None: it must)."""
    ll = iso.landlock or ""
    ok = {
        None: True,
        "landlock": bool(iso.landlock),
        "landlock-or-pidns": bool(iso.landlock) or iso.namespaces,
        "pidns": iso.namespaces,
        "netns": iso.namespaces,
        "net": iso.namespaces or "tcp" in ll,
        "signals": iso.namespaces or "signals" in ll,
        "abstract-sockets": iso.namespaces or "signals" in ll,  # scoped together (Landlock ABI 6)
    }[needs]
    if ok:
        return None
    return "needs %s, which this machine lacks: %s" % (needs, iso.describe())


def _render(h: Hostile, ctx: dict) -> str:
    code = h.code
    for _ in range(3):  # snippets may use snippets
        lines = []
        for line in code.splitlines():
            key = line.strip()[1:-1]
            if line.strip() == "@%s@" % key and key in SNIPPETS:  # a snippet alone on its line: indent it
                indent = line[:len(line) - len(line.lstrip())]
                lines += [indent + s for s in SNIPPETS[key].strip("\n").splitlines()]
            else:
                lines.append(line)
        code = "\n".join(lines) + "\n"
    for key, text in SNIPPETS.items():
        code = code.replace("@%s@" % key, text.strip("\n"))
    for key, value in ctx.items():
        code = code.replace("@%s@" % key, value)
    left = re.findall(r"@[A-Z_]+@", code)
    assert not left, "%s: unexpanded %s" % (h.name, left)
    return code


def _problem(h: Hostile) -> dict:
    if h.problem:
        return PROBLEMS[h.problem]
    return {"prompt": PROMPT, "test": TEST, "entry_point": ENTRY}


def _make_canaries(root: str) -> None:
    os.makedirs(root)
    with open(os.path.join(root, "canary.txt"), "w") as f:
        f.write("canary-" + secrets.token_hex(8))
    os.chmod(os.path.join(root, "canary.txt"), 0o640)
    os.makedirs(os.path.join(root, "canary_dir"))
    with open(os.path.join(root, "canary_dir", "inner.txt"), "w") as f:
        f.write("inner")
    with open(os.path.join(root, "secret.txt"), "w") as f:
        f.write("lmxf" + secrets.token_hex(12))
    os.chmod(os.path.join(root, "secret.txt"), 0o600)


def _snapshot(root: str) -> dict:
    """Everything observable about a directory tree, without following links."""
    snap = {}

    def one(path, rel):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                body = hashlib.sha256(f.read()).hexdigest()
        else:
            body = None
        try:
            xattrs = tuple(sorted(os.listxattr(path, follow_symlinks=False)))
        except OSError:
            xattrs = ()
        snap[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_mtime_ns, body, xattrs)

    if not os.path.lexists(root):
        return {}
    one(root, ".")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            one(p, os.path.relpath(p, root))
    return snap


def _diff(before: dict, after: dict) -> list[str]:
    out = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            out.append("%s: %s -> %s" % (k, before.get(k), after.get(k)))
    return out


def _sleep_arg(mark: str) -> str:
    """A unique duration for /bin/sleep, which cannot carry the marker itself."""
    return "7777.%d" % int(mark[3:], 16)


def _marked_processes(marks) -> dict[str, list[int]]:
    """Live (non-zombie) processes whose argv or comm contains one of the marks
    (or, for /bin/sleep, the mark's unique duration as a whole argument)."""
    pats = [(m, m.encode(), b"\0" + _sleep_arg(m).encode() + b"\0") for m in marks]
    found: dict[str, list[int]] = {}
    seen: set[str] = set()
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    # A process that keeps re-forking changes pid while /proc is read: list
    # again and read the pids that appeared meanwhile.
    for _ in range(4):
        new = [p for p in pids if p not in seen]
        if not new:
            break
        seen.update(new)
        for pid in new:
            _read_marked(pid, pats, found)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    return found


def _read_marked(pid: str, pats, found: dict) -> None:
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            st = f.read()
        if st[st.rindex(b")") + 2:][:1] in (b"Z", b"X"):
            return
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            blob = f.read()
        with open("/proc/%s/comm" % pid, "rb") as f:
            blob += b"\0" + f.read()
    except (OSError, ValueError):
        return
    for m, mark, sleep_arg in pats:
        if mark in blob or sleep_arg in b"\0" + blob:
            found.setdefault(m, []).append(int(pid))


def _wait_marked_gone(mark: str, grace: float = 1.0, confirm: int = 6) -> list[int]:
    """Marked processes still alive after ``grace`` seconds. A process that keeps
    re-forking can slip through one scan of /proc, so "gone" needs ``confirm``
    empty scans in a row."""
    deadline = time.monotonic() + grace
    empty = 0
    while True:
        alive = _marked_processes([mark]).get(mark, [])
        if alive:
            empty = 0
            if time.monotonic() > deadline:
                return alive
        else:
            empty += 1
            if empty >= confirm:
                return []
        time.sleep(0.01)


def _kill_marked(marks) -> None:
    """Kill processes the hostile programs (or their controls) left behind."""
    me = os.getpgrp()
    for _ in range(20):
        found = _marked_processes(marks)
        if not found:
            return
        for pids in found.values():
            for pid in pids:
                try:
                    pgid = os.getpgid(pid)
                    if pgid not in (me, 0, 1):
                        os.killpg(pgid, signal.SIGKILL)
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.1)


class Listeners:
    """Loopback TCP/UDP, a pathname UNIX socket outside any sandbox, an abstract UNIX socket."""

    def __init__(self, root: str):
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(128)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self._short_dir = None
        if len(root) > 90:  # AF_UNIX paths are limited to 108 bytes
            root = self._short_dir = tempfile.mkdtemp(prefix="lmx", dir="/tmp")
        self.unix_path = os.path.join(root, "l.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        self.unix.listen(128)
        self.abstract_name = "\0lmx-abstract-" + secrets.token_hex(6)
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind(self.abstract_name)
        self.abstract.listen(128)
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.setblocking(False)

    def drain(self) -> list[tuple[str, bytes]]:
        """Every connection/datagram received since the last drain: (listener, payload)."""
        got = []
        for kind, srv in (("tcp", self.tcp), ("unix", self.unix), ("abstract", self.abstract)):
            while True:
                try:
                    conn, _ = srv.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.settimeout(0.5)
                try:
                    payload = conn.recv(200)
                except OSError:
                    payload = b""
                conn.close()
                got.append((kind, payload))
        while True:
            try:
                payload, _ = self.udp.recvfrom(200)
            except (BlockingIOError, InterruptedError):
                break
            got.append(("udp", payload))
        return got

    def close(self):
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.close()
        if self._short_dir:
            shutil.rmtree(self._short_dir, ignore_errors=True)


def _start_canary_process() -> subprocess.Popen:
    """A process of the harness's user that holds the secret in its environment."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "lmx-canary-process"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.05)
    return p


def _process_fingerprint(pid: int) -> dict:
    """What another process could change about a process: stopped?, limits, tracer, priority, affinity."""
    with open("/proc/%d/stat" % pid) as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    fp = {"stopped/traced/dead": state in "TtZX"}
    with open("/proc/%d/limits" % pid) as f:
        fp.update(("limit: " + line[:26].strip(), line[26:].split()) for line in f.readlines()[1:])
    with open("/proc/%d/status" % pid) as f:
        fp.update(line.split(":", 1) for line in f if line.startswith("TracerPid"))
    fp["nice"] = os.getpriority(os.PRIO_PROCESS, pid)
    fp["affinity"] = sorted(os.sched_getaffinity(pid))
    return fp


def _fingerprint_diff(before: dict, after: dict) -> list[str]:
    if not after:
        return ["the process is gone"]
    return ["%s: %s -> %s" % (k, before.get(k), after.get(k)) for k in before if before.get(k) != after.get(k)]


@dataclasses.dataclass(repr=False)
class Outcome:
    verdict: object = None
    wall: float = 0.0
    survivors: list = dataclasses.field(default_factory=list)
    diff: list = dataclasses.field(default_factory=list)
    shm_left: bool = False
    skipped: str | None = None
    code: str = ""


@dataclasses.dataclass(repr=False)
class Batch:
    iso: object
    outcomes: dict
    controls: dict
    net_sandbox: list
    net_control: list
    canary_ok: bool
    canary_before: dict
    canary_after: dict
    workroot_left: list
    after_correct: object
    after_wrong: object
    secret: str
    wall: float
    base: str


def _ctx(name, mark, out, canary_pid, listeners, prefix=""):
    return {
        "MARK": repr(mark),
        "SLEEP_ARG": repr(_sleep_arg(mark)),
        "OUT": repr(out),
        "CANARY": repr(os.path.join(out, "canary.txt")),
        "CANARY_DIR": repr(os.path.join(out, "canary_dir")),
        "SECRET_FILE": repr(os.path.join(out, "secret.txt")),
        "SECRET_NAME": repr(SECRET_NAME),
        "CANARY_PID": str(canary_pid),
        "HARNESS_PID": str(os.getpid()),
        "TCP_PORT": str(listeners.tcp.getsockname()[1]),
        "UDP_PORT": str(listeners.udp.getsockname()[1]),
        "UNIX_SOCK": repr(listeners.unix_path),
        "ABSTRACT_SOCK": repr(listeners.abstract_name),
        "NAME": repr(prefix + name),
        "SHM": repr("/dev/shm/" + mark),
    }


def _run_control(h, base, canary_pid, listeners):
    """Run the hostile program WITHOUT the sandbox on its own canaries: the attack must work."""
    out = os.path.join(base, "c", h.name)
    cwd = os.path.join(base, "cw", h.name)
    _make_canaries(out)
    os.makedirs(cwd)
    mark = "lmc" + secrets.token_hex(4)
    code = _render(h, _ctx(h.name, mark, out, canary_pid, listeners, prefix="control-"))
    before = _snapshot(out)
    script = os.path.join(base, "cw", h.name + ".py")
    with open(script, "w") as f:
        f.write(PROMPT + code + "\nprint('RESULT', add(2, 3))\n")
    try:
        r = subprocess.run([sys.executable, script], cwd=cwd, capture_output=True, timeout=8,
                           start_new_session=True)
        stdout = r.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        stdout = "<timeout>"
    deadline = time.monotonic() + 1.5
    while True:
        alive = _marked_processes([mark]).get(mark, [])
        if alive or time.monotonic() > deadline or h.name in [x.name for x in LEAK]:
            break
        if _diff(before, _snapshot(out)) or os.path.exists("/dev/shm/" + mark):
            break
        time.sleep(0.05)
    _kill_marked([mark])
    shm = os.path.exists("/dev/shm/" + mark)
    if shm:
        os.unlink("/dev/shm/" + mark)
    return {"stdout": stdout, "leaked": "RESULT 5" in stdout, "diff": _diff(before, _snapshot(out)),
            "processes": bool(alive), "shm": shm}


def _run_one(h, base, canary_pid, listeners, iso, force=False):
    out = os.path.join(base, "p", h.name)
    _make_canaries(out)
    mark = "lmx" + secrets.token_hex(4)
    o = Outcome()
    o.skipped = _unmet(h.needs, iso) if h.needs in ("signals", "pidns") and not force else None
    if o.skipped:  # never aim a signal/prlimit attack at the harness where nothing would stop it
        return h.name, o, mark
    o.code = _render(h, _ctx(h.name, mark, out, canary_pid, listeners))
    p = _problem(h)
    before = _snapshot(out)
    t0 = time.monotonic()
    o.verdict = run_program(p["prompt"], o.code, p["test"], p["entry_point"], LIMITS)
    o.wall = time.monotonic() - t0
    o.survivors = _wait_marked_gone(mark)
    o.diff = _diff(before, _snapshot(out))
    o.shm_left = os.path.exists("/dev/shm/" + mark)
    if o.shm_left:
        os.unlink("/dev/shm/" + mark)
    o.skipped = _unmet(h.needs, iso)
    return h.name, o, mark


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    try:
        iso = isolation()
    except SandboxUnavailable as exc:
        pytest.skip("the sandbox cannot start here: %s" % exc)
    base = str(tmp_path_factory.mktemp("hostile"))
    workroot = os.path.join(base, "work")
    os.makedirs(workroot)
    secret = "lmxs" + secrets.token_hex(16)
    mp = pytest.MonkeyPatch()
    listeners = Listeners(base)
    marks: list[str] = []
    canary = control_canary = None
    try:
        mp.setenv(SECRET_NAME, secret)
        # The sandbox's temporary directories go here, so the test can see them all removed.
        mp.setattr(tempfile, "tempdir", workroot)
        canary = _start_canary_process()
        control_canary = _start_canary_process()
        canary_before = _process_fingerprint(canary.pid)
        t0 = time.monotonic()
        # 1. Controls (no sandbox): the attacks must work.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futs = {h.name: pool.submit(_run_control, h, base, control_canary.pid, listeners)
                    for h in ALL if h.control}
            controls = {n: f.result() for n, f in futs.items()}
        time.sleep(0.2)
        net_control = listeners.drain()
        # 2. The hostile batch, in the sandbox, several at a time.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futs = [pool.submit(_run_one, h, base, canary.pid, listeners, iso) for h in ALL]
            outcomes = {}
            for f in futs:
                name, o, mark = f.result()
                outcomes[name] = o
                marks.append(mark)
        wall = time.monotonic() - t0
        time.sleep(0.2)
        net_sandbox = listeners.drain()
        canary_ok = canary.poll() is None
        canary_after = _process_fingerprint(canary.pid) if canary_ok else {}
        # 3. The harness survived and still tells right from wrong.
        after_correct = run_program(PROMPT, CORRECT, TEST, ENTRY, LIMITS)
        after_wrong = run_program(PROMPT, WRONG, TEST, ENTRY, LIMITS)
        workroot_left = sorted(os.listdir(workroot))
        return Batch(iso, outcomes, controls, net_sandbox, net_control, canary_ok, canary_before,
                     canary_after, workroot_left, after_correct, after_wrong, secret, wall, base)
    finally:
        _kill_marked(marks)
        for p in (canary, control_canary):
            if p is not None:
                p.kill()
                p.wait()
        listeners.close()
        mp.undo()


# ==================================================================== tests
def test_table_is_complete():
    names = [h.name for h in ALL]
    assert len(names) == len(set(names)), "duplicate program names"
    assert len(ALL) >= 30 and len(FORGERY) >= 15 and len(ESCAPE) >= 15
    for h in ALL:
        assert h.what and h.code.strip(), h.name
        full = sandbox.Isolation(True, "landlock(abi 7: fs,tcp,signals)", ())
        assert _unmet(h.needs, full) is None, h.name  # a known mechanism name


@pytest.mark.parametrize("name", [h.name for h in ALL])
def test_hostile_program_compiles(name):
    """A hostile program with a syntax error would FAIL for the wrong reason."""
    h = BY_NAME[name]
    ctx = {k: "0" for k in ("CANARY_PID", "HARNESS_PID", "TCP_PORT", "UDP_PORT")}
    ctx.update({k: repr("x") for k in ("MARK", "SLEEP_ARG", "OUT", "CANARY", "CANARY_DIR", "SECRET_FILE",
                                       "SECRET_NAME", "UNIX_SOCK", "ABSTRACT_SOCK", "NAME", "SHM")})
    code = compile(_problem(h)["prompt"] + _render(h, ctx), name, "exec")
    assert code.co_filename == name


def test_isolation_report(batch):
    iso = batch.iso
    print("\nsandbox isolation:", iso.describe(), "| note:", iso.note or "-")
    probe = "    return a + b if OK else a - b\n@UNGUARD@\nimport ctypes\nOK = ctypes.CDLL(None).getpid() > 0\n"
    v = run_program(PROMPT, _render(Hostile("probe", "", probe), {}), TEST, ENTRY, LIMITS)
    print("audit hook switched off from inside by @UNGUARD@:", v.passed,
          "(the unguarded programs test the kernel layers)" if v.passed else "(they mostly test the hook)")
    if not iso.strong:
        pytest.skip("no Landlock on this machine (%s): file-system escapes are only stopped by the "
                    "audit hook, which a program can switch off" % iso.describe())
    assert iso.landlock.startswith("landlock(")
    assert "rlimits" in iso.applied and "audit-hook" in iso.applied
    if os.uname().machine in ("x86_64", "aarch64"):
        assert any(a.startswith("seccomp(") for a in iso.applied), iso.applied
    if not iso.namespaces:
        pytest.skip("no user namespaces on this machine (%s): the process-group tier is in use" % iso.describe())


@pytest.mark.parametrize("name", MUST_NOT_PASS)
def test_forgery_and_leak_verdict_is_not_passed(batch, name):
    o = batch.outcomes[name]
    h = BY_NAME[name]
    if o.skipped and (h in LEAK):
        pytest.skip(o.skipped)
    assert o.verdict.status in ("failed", "timeout"), (
        "%s (%s) got %s: the attack %s" % (name, h.what, o.verdict,
                                           "leaked" if h in LEAK else "forged a pass"))


@pytest.mark.parametrize("name", [h.name for h in ALL])
def test_no_side_effect_escaped(batch, name):
    o = batch.outcomes[name]
    h = BY_NAME[name]
    if o.skipped:
        pytest.skip(o.skipped)
    problems = []
    if o.diff:
        problems.append("files outside the sandbox changed: %s" % o.diff)
    if o.survivors:
        problems.append("processes still alive 1 s after the verdict: pids %s" % o.survivors)
    if o.shm_left:
        problems.append("/dev/shm file written")
    sent = [(k, p) for k, p in batch.net_sandbox if p == name.encode()]
    if sent:
        problems.append("listeners received %s" % sent)
    if batch.secret in o.verdict.detail:
        problems.append("the secret appears in the verdict detail")
    if o.verdict.status == "sandbox_error" and h in ESCAPE:  # the other tables assert failed/timeout
        # "not the model's fault": the evaluation stops and the cache retries it forever
        problems.append("the program made its verdict sandbox_error (%s)" % o.verdict.detail)
    assert not problems, "%s (%s), verdict %s:\n%s" % (name, h.what, o.verdict, "\n".join(problems))


@pytest.mark.parametrize("name", [h.name for h in ALL if h.control])
def test_control_attack_works_without_sandbox(batch, name):
    """The same program run unsandboxed does the harm, so a clean sandboxed result is the sandbox's merit."""
    c = batch.controls[name]
    reason = _control_unsupported(name, batch.iso, batch.base)
    if reason:
        pytest.skip(reason)
    net = [(k, p) for k, p in batch.net_control if p == ("control-" + name).encode()]
    if BY_NAME[name] in LEAK:
        worked = c["leaked"]
    else:
        worked = c["diff"] or c["processes"] or c["shm"] or net
    assert worked, "control run of %s did nothing: %s" % (name, c)


def _control_unsupported(name, iso, base) -> str | None:
    """Attacks that cannot work on this machine even without the sandbox."""
    if name == "fs_nested_userns_bind_mount" and not iso.namespaces:
        return "unprivileged user namespaces are unavailable here"
    if name == "fs_setxattr_canary":
        probe = tempfile.NamedTemporaryFile(dir=base)
        try:
            os.setxattr(probe.name, "user.lmx", b"1")
        except OSError as exc:
            return "user xattrs are unsupported on this file system: %s" % exc
        finally:
            probe.close()
    return None


def test_no_unattributed_network_traffic(batch):
    known = {h.name.encode() for h in ALL}
    stray = [(k, p) for k, p in batch.net_sandbox if p not in known]
    assert not stray, "connections/datagrams from the sandbox: %s" % stray


def test_harness_and_canary_process_survived(batch):
    assert batch.canary_ok, "the canary process (a process of the harness's user) was killed"
    changed = _fingerprint_diff(batch.canary_before, batch.canary_after)
    assert not changed, "the canary process was changed: %s" % changed


def test_correct_solution_still_passes_after_batch(batch):
    assert batch.after_correct.status == "passed", batch.after_correct
    assert batch.after_wrong.status == "failed", batch.after_wrong


def test_every_sandbox_directory_removed(batch):
    assert batch.workroot_left == [], "left behind: %s" % batch.workroot_left


def test_timings(batch):
    """Print how long each program took; the harness enforced its limit on every one."""
    rows = sorted(((o.wall, n, o.verdict.status if o.verdict else "skipped",
                    o.verdict.detail[:70] if o.verdict else o.skipped)
                   for n, o in batch.outcomes.items()), reverse=True)
    print("\n%d hostile programs in %.1f s (incl. %d unsandboxed controls)"
          % (len(batch.outcomes), batch.wall, len(batch.controls)))
    for wall, n, status, detail in rows:
        print("  %6.2f s  %-8s %-32s %s" % (wall, status, n, detail))
    ran = [o for o in batch.outcomes.values() if o.verdict is not None]
    assert ran and max(o.wall for o in ran) < LIMITS.timeout + 5.0 + 3.0
    # The hangs hit the program's own limit, not the harness's last-resort deadline.
    for n in ("sleep_forever_at_load", "busy_loop_in_call", "sigterm_ignored_loop", "sleep_in_call"):
        assert batch.outcomes[n].verdict.status == "timeout", (n, batch.outcomes[n].verdict)


def test_marker_scanner_sees_live_processes():
    """Positive control for the process check: a marked process is found, and gone once killed."""
    mark = "lmx" + secrets.token_hex(4)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", mark])
    try:
        deadline = time.monotonic() + 5
        while not _marked_processes([mark]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _marked_processes([mark]).get(mark) == [p.pid]
    finally:
        p.kill()
        p.wait()
    assert _marked_processes([mark]) == {}


def test_snapshot_sees_metadata_changes(tmp_path):
    """Positive control for the file check: mode, mtime, xattr and content changes are all seen."""
    root = str(tmp_path / "c")
    _make_canaries(root)
    canary = os.path.join(root, "canary.txt")
    before = _snapshot(root)
    for change in (lambda: os.chmod(canary, 0o777), lambda: os.utime(canary, (1, 1)),
                   lambda: open(canary, "a").write("x")):
        change()
        after = _snapshot(root)
        assert _diff(before, after)
        before = after


# ----------------------------------------------- the no-namespaces tier
@pytest.fixture
def no_namespaces(monkeypatch):
    """Force the process-group tier (LM_EVAL_EXT_SANDBOX=no-namespaces), restore afterwards."""
    try:
        before = isolation()
    except SandboxUnavailable as exc:
        pytest.skip("the sandbox cannot start here: %s" % exc)
    wrapper_before = list(sandbox._WRAPPER)
    monkeypatch.setenv("LM_EVAL_EXT_SANDBOX", "no-namespaces")
    # isolation() fills sandbox._WRAPPER in place: give it a fresh list, so the
    # cached namespaces wrapper comes back with monkeypatch's undo.
    monkeypatch.setattr(sandbox, "_WRAPPER", [])
    isolation.cache_clear()
    try:
        iso = isolation()
    except SandboxUnavailable as exc:
        pytest.skip("the no-namespaces tier cannot start here: %s" % exc)
    assert not iso.namespaces and sandbox._WRAPPER == []
    yield iso
    monkeypatch.undo()
    isolation.cache_clear()
    # Back to the tier the rest of the session uses.
    assert isolation() == before and sandbox._WRAPPER == wrapper_before


def _run_in_current_tier(names, tmp_path, canary_pid, listeners, force=False):
    iso = isolation()
    base = str(tmp_path)
    results = {}
    marks = []
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for name, o, mark in pool.map(
                    lambda n: _run_one(BY_NAME[n], base, canary_pid, listeners, iso, force), names):
                results[name] = o
                marks.append(mark)
    finally:
        _kill_marked(marks)
    return results


def test_no_namespaces_tier_kills_every_process(no_namespaces, tmp_path):
    iso = no_namespaces
    print("\nforced tier:", iso.describe())
    listeners = Listeners(str(tmp_path))
    try:
        results = _run_in_current_tier(NO_NAMESPACE_PROGRAMS, tmp_path, 0, listeners)
    finally:
        listeners.close()
    bad = {n: o.survivors for n, o in results.items() if o.survivors}
    assert not bad, "processes survived the verdict in the no-namespaces tier: %s" % bad
    assert all(o.verdict is not None for o in results.values())
    assert run_program(PROMPT, CORRECT, TEST, ENTRY, LIMITS).status == "passed"


def test_no_namespaces_tier_network_and_neighbours(no_namespaces, tmp_path):
    """In the process-group tier: no UDP to loopback, no prlimit() of the user's other processes."""
    iso = no_namespaces
    listeners = Listeners(str(tmp_path))
    canary = _start_canary_process()
    try:
        before = _process_fingerprint(canary.pid)
        results = _run_in_current_tier(["udp_sendto", "tcp_connect_unguarded", "prlimit_canary", "ptrace_canary",
                                        "unix_socket_abstract"], tmp_path, canary.pid, listeners, force=True)
        time.sleep(0.2)
        got = listeners.drain()
        after = _process_fingerprint(canary.pid) if canary.poll() is None else {}
    finally:
        canary.kill()
        canary.wait()
        listeners.close()
    problems = []
    for name, o in results.items():
        if o.verdict.status == "passed":
            problems.append("%s: PASSED, i.e. the attack worked (%s)" % (name, BY_NAME[name].what))
    if got:
        problems.append("listeners received %s" % got)
    if _fingerprint_diff(before, after):
        problems.append("canary process changed: %s" % _fingerprint_diff(before, after))
    assert not problems, "no-namespaces tier (%s):\n%s" % (iso.describe(), "\n".join(problems))
