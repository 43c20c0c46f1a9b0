"""`lm-eval-ext check` on malformed input: every problem with a samples or a
problems file is one line on stderr, ``FILE:LINE: what`` (``FILE: what`` for
the file as a whole), exit status 2, no traceback and no program executed.
Accepted: CRLF, a UTF-8 byte order mark, blank lines, no final newline, gzip
recognised by its bytes, many samples of one task, a long line. And an
interrupted check resumes from its --cache.

Runs the command in-process through ``lm_eval_ext.cli.main``.
"""

from __future__ import annotations

import gzip
import json
import re
import time

import pytest

from lm_eval_ext.conventions import jsonl
from lm_eval_ext.cli import main
from lm_eval_ext.execution import Verdict, checker

ADD = {"task_id": "t/add", "prompt": "def add(a, b):\n",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}
NEG = {"task_id": "t/neg", "prompt": "def neg(x):\n", "test": "def check(candidate):\n    assert candidate(2) == -2\n",
       "entry_point": "neg"}
GOOD = "    return a + b\n"
BAD = "    return a - b\n"


def sample(task_id="t/add", completion=GOOD, **extra) -> str:
    return json.dumps({"task_id": task_id, "completion": completion, **extra})


S = sample()  # one valid line


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(ADD) + "\n" + json.dumps(NEG) + "\n")
    return path


@pytest.fixture
def no_execution(monkeypatch):
    """Bad input must be refused before any program runs."""
    def refuse(*a, **k):
        raise AssertionError("a program ran although the input is malformed")

    monkeypatch.setattr(checker, "run_program", refuse)


def check(capsys, samples, *args):
    rc = main(["check", str(samples), *map(str, args), "--confirm_run_unsafe_code"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_one_line(err: str, path, what: str) -> None:
    """stderr is exactly one line: PATH + what (a regex: ":LINE: message" or ": message")."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(re.escape(str(path)) + what, lines[0]), lines[0]


_GZ = gzip.compress("".join(sample(i=i) + "\n" for i in range(3000)).encode())

# name, file bytes, what stderr says after the path
BAD_SAMPLES = [
    ("empty.jsonl", b"", r": no samples"),
    ("blank.jsonl", b"\n \r\n\t\n", r": no samples"),
    ("empty.jsonl.gz", b"", r": no samples"),
    ("empty-member.jsonl.gz", gzip.compress(b""), r": no samples"),
    ("plain.jsonl.gz", (S + "\n").encode(), r": not a gzip file \(it starts with b'\{\"'\)"),
    ("head.jsonl.gz", _GZ[:20], r":1: the gzip data ends early \(a truncated file\?\)"),
    ("cut.jsonl.gz", _GZ[: len(_GZ) // 2], r":\d{3,4}: the gzip data ends early \(a truncated file\?\)"),
    ("crc.jsonl.gz", _GZ[:-8] + bytes([_GZ[-8] ^ 1]) + _GZ[-7:], r":3001: damaged gzip data \(CRC check failed .*\)"),
    ("tail.jsonl.gz", _GZ + b"junk", r":3001: damaged gzip data \(.*\)"),
    ("utf8.jsonl", (S + "\n" + S + "\n").encode() + b'{"task_id": "t/add", "completion": "\xc3("}\n',
     r":3: not valid UTF-8 \(byte 0xc3 at column 37\)"),
    ("utf16.jsonl", (S + "\n").encode("utf-16"),
     r":1: not valid UTF-8 \(byte 0xff at column 1; the file starts with a UTF-16 byte order mark: save it as UTF-8\)"),
    ("json.jsonl", (S + "\n{oops\n").encode(),
     r":2: not valid JSON \(Expecting property name enclosed in double quotes, column 2\)"),
    ("torn.jsonl", (S + "\n" + S[:20]).encode(), r":2: not valid JSON \(.*\)"),
    ("deep.jsonl", (S + "\n" + "[" * 100_000 + "\n").encode(), r":2: JSON nested too deeply to read"),
    ("bigint.jsonl", (S + '\n{"task_id": "t/add", "completion": "", "n": ' + "9" * 5000 + "}\n").encode(),
     r":2: unreadable JSON \(Exceeds the limit .*\)"),
    ("array.jsonl", (S + "\n[1, 2]\n").encode(), r":2: expected a JSON object with task_id and completion, got array"),
    ("string.jsonl", (S + '\n"x"\n').encode(), r":2: expected a JSON object with task_id and completion, got string"),
    ("null.jsonl", b"null\n", r":1: expected a JSON object with task_id and completion, got null"),
    ("no_task.jsonl", (S + '\n{"completion": "x"}\n').encode(),
     r":2: no task_id \(a sample needs string fields task_id and completion\)"),
    ("no_completion.jsonl", b'{"task_id": "t/add"}\n',
     r":1: no completion \(a sample needs string fields task_id and completion\)"),
    ("completion_int.jsonl", b'{"task_id": "t/add", "completion": 3}\n',
     r":1: completion must be a string, not number"),
    ("completion_null.jsonl", b'{"task_id": "t/add", "completion": null}\n',
     r":1: completion must be a string, not null"),
    ("task_int.jsonl", b'{"task_id": 0, "completion": "x"}\n', r":1: task_id must be a string, not number"),
    ("dup_key.jsonl", f'{{"task_id": "t/add", "completion": {json.dumps(GOOD)}, "completion": {json.dumps(BAD)}}}\n'
     .encode(), r":1: key 'completion' appears twice in one object"),
    ("unknown.jsonl", (S + "\n" + sample("t/zzz") + "\n").encode(),
     r":2: task_id 't/zzz' is not among the 2 problems of file:.*problems\.jsonl"),
    ("near.jsonl", (S + "\r\n\r\n" + sample("t/adds") + "\r\n").encode(),
     r":3: task_id 't/adds' is not among the 2 problems of file:.*; did you mean 't/add'\?"),
    ("odd_id.jsonl", b'{"task_id": "t/\\ud800\\n", "completion": ""}\n',
     r":1: task_id 't/\\ud800\\n' is not among the 2 problems .*"),
]


@pytest.mark.parametrize("name, data, what", BAD_SAMPLES, ids=[c[0] for c in BAD_SAMPLES])
def test_bad_samples_file_is_one_line_and_status_2(tmp_path, capsys, problems, no_execution, name, data, what):
    path = tmp_path / name
    path.write_bytes(data)
    rc, _, err = check(capsys, path, "--problems", problems)
    assert rc == 2
    assert_one_line(err, path, what)


def test_missing_samples_file(tmp_path, capsys, problems, no_execution):
    rc, _, err = check(capsys, tmp_path / "nope.jsonl", "--problems", problems)
    assert rc == 2
    assert_one_line(err, tmp_path / "nope.jsonl", r": file not found")


def test_line_longer_than_the_limit(tmp_path, capsys, problems, no_execution, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "long.jsonl"
    path.write_text(S + "\n" + sample(completion="#" * 2000) + "\n")
    rc, _, err = check(capsys, path, "--problems", problems)
    assert rc == 2
    assert_one_line(err, path, r":2: line longer than 1000 bytes")


_P = json.dumps(ADD)
BAD_PROBLEMS = [
    ("empty.jsonl", b"", r": no problems in file"),
    ("plain.jsonl.gz", (_P + "\n").encode(), r": not a gzip file \(it starts with b'\{\"'\)"),
    ("head.jsonl.gz", gzip.compress((_P + "\n").encode())[:25], r":1: the gzip data ends early \(a truncated file\?\)"),
    ("utf8.jsonl", (_P + "\n").encode() + b'{"task_id": "\xff"}\n', r":2: not valid UTF-8 \(byte 0xff at column 14\)"),
    ("json.jsonl", (_P + "\n{\n").encode(), r":2: not valid JSON \(.*\)"),
    ("array.jsonl", (_P + "\n[]\n").encode(), r":2: expected a JSON object \(one problem\), got array"),
    ("missing.jsonl", b'{"task_id": "a", "prompt": ""}\n', r":1: missing string field\(s\) \['test', 'entry_point'\]"),
    ("dup_task.jsonl", (_P + "\n\n" + _P + "\n").encode(), r":3: task_id 't/add' already on line 1"),
    ("dup_key.jsonl", _P.replace('"prompt"', '"test": "", "prompt"').encode() + b"\n",
     r":1: key 'test' appears twice in one object"),
    ("entry.jsonl", json.dumps(dict(ADD, entry_point="add()")).encode() + b"\n",
     r":1: entry_point 'add\(\)' is not a Python identifier"),
    ("canonical.jsonl", json.dumps(dict(ADD, canonical_solution=[1])).encode() + b"\n",
     r":1: canonical_solution must be a string, not array"),
]


@pytest.mark.parametrize("name, data, what", BAD_PROBLEMS, ids=[c[0] for c in BAD_PROBLEMS])
def test_bad_problems_file_is_one_line_and_status_2(tmp_path, capsys, no_execution, name, data, what):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(S + "\n")
    (tmp_path / "p").mkdir()
    path = tmp_path / "p" / name
    path.write_bytes(data)
    rc, _, err = check(capsys, samples, "--problems", path)
    assert rc == 2
    assert_one_line(err, path, what)


def test_missing_problems_file(tmp_path, capsys, no_execution):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(S + "\n")
    rc, _, err = check(capsys, samples, "--problems", tmp_path / "nope.jsonl")
    assert rc == 2
    assert_one_line(err, tmp_path / "nope.jsonl", r": file not found \(--problems takes .*\)")


def test_files_that_would_be_overwritten_are_refused(tmp_path, capsys, problems, no_execution):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(S + "\n")
    rc, _, err = check(capsys, samples, "--problems", problems, "--output_path", samples)
    assert rc == 2
    assert_one_line(err, samples, r": the output would overwrite the samples: give another --output_path")
    rc, _, err = check(capsys, samples, "--problems", problems, "--cache", samples)
    assert rc == 2
    assert_one_line(err, samples, r": --cache must be a file of its own \(verdicts are appended to it\)")
    out = tmp_path / "no" / "dir" / "out.jsonl"
    rc, _, err = check(capsys, samples, "--problems", problems, "--output_path", out)
    assert rc == 2
    assert_one_line(err, out, r": cannot write the output: no directory .*")


@pytest.mark.parametrize("flag, value", [("--timeout", "0"), ("--timeout", "nan"), ("--timeout", "-1"),
                                         ("--workers", "0"), ("--workers", "two")])
def test_bad_limits_are_usage_errors(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        main(["check", "s.jsonl", flag, value, "--confirm_run_unsafe_code"])
    assert exc.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_tolerated_forms_still_score(tmp_path, capsys, problems):
    """A BOM, CRLF, blank lines, no final newline, several samples of one
    task, a long line (a 5 MB field): scored, each sample in order."""
    lines = [sample(i=0), sample(completion=BAD, i=1), sample("t/neg", "    return -x\n", i=2), "",
             sample(i=3), "   ", sample(i=4, note="x" * 5_000_000)]  # a 5 MB line (the sandbox caps programs)
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())  # no final newline
    out = tmp_path / "out.jsonl"
    rc, stdout, _ = check(capsys, path, "--problems", problems, "--output_path", out, "--timeout", "5")
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["i"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["passed", "failed", "passed", "passed", "passed"]
    assert "5 samples of 2 problems" in stdout
    # gzip recognised by its bytes under a plain name, and by its name; problems gzipped with a BOM
    gz_problems = tmp_path / "problems.jsonl.gz"
    gz_problems.write_bytes(gzip.compress(b"\xef\xbb\xbf" + problems.read_bytes().replace(b"\n", b"\r\n")))
    for name in ("gz_as_plain.jsonl", "samples.jsonl.gz"):
        p = tmp_path / name
        p.write_bytes(gzip.compress((sample(i=0) + "\n" + sample(completion=BAD, i=1)).encode()))
        rc, _, _ = check(capsys, p, "--problems", gz_problems, "--output_path", out)
        assert rc == 0
        assert [json.loads(x)["status"] for x in out.read_text().splitlines()] == ["passed", "failed"]


def test_interrupted_check_resumes_from_its_cache(tmp_path, capsys, problems, monkeypatch):
    """Ctrl-C during a check with --cache: exit 130 with a line saying what
    is kept; the same command again runs only what had not been checked, and
    a torn last line in the cache is harmless."""
    completions = [f"    return a + b  # {i}\n" for i in range(6)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(sample(completion=c) + "\n" for c in completions))
    cache = tmp_path / "verdicts.jsonl"
    ran, interrupted = [], []

    def fake_run(prompt, completion, test, entry_point, limits):
        ran.append(completion)
        if completion == completions[2] and not interrupted:
            interrupted.append(True)
            deadline = time.monotonic() + 10
            while (not cache.exists() or len(cache.read_text().splitlines()) < 2) and time.monotonic() < deadline:
                time.sleep(0.01)  # let the two verdicts before reach the cache
            raise KeyboardInterrupt
        if interrupted and completion in completions[3:] and len(ran) == 4:
            time.sleep(0.3)  # the one a worker may already have taken while Ctrl-C is handled
        return Verdict("passed", "", 0.0)

    monkeypatch.setattr(checker, "run_program", fake_run)
    args = ["--problems", problems, "--cache", cache, "--workers", "1"]
    rc, _, err = check(capsys, samples, *args)
    assert rc == 130
    assert f"interrupted: 2 verdicts are kept in {cache}; rerun the same command to resume" in err
    assert len(cache.read_text().splitlines()) == 2
    assert ran[:3] == completions[:3] and len(ran) <= 4  # the queue is dropped, not run to the end
    with open(cache, "a") as f:
        f.write('{"key": "0123", "sta')  # killed mid-write
    ran.clear()
    rc, _, _ = check(capsys, samples, *args)
    assert rc == 0
    assert sorted(ran) == sorted(completions[2:])  # only what was not checked before
    ran.clear()
    rc, _, _ = check(capsys, samples, *args)
    assert rc == 0 and ran == []  # everything cached, the verdict written after the torn line included
