"""The sandbox's value codec (the only thing the supervisor reads from the
model's process) and the PassUntil metrics in lm-eval's calling convention."""

from __future__ import annotations

import math
import struct

import pytest

from lm_eval_ext.passuntil import metrics
from lm_eval_ext.execution import launcher


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**200, -(2**4000), 1.5, -0.0, float("inf"), "", "héllo\udc80", b"\x00\xff",
    1 + 2j, [1, [2, (3, "x")]], (), {"a": [1, 2], 3: None, (1, 2): {4}}, {1, 2}, frozenset({"a"}),
])
def test_codec_round_trips_exact_types(value):
    back = launcher.decode(launcher.encode(value))
    assert back == value and type(back) is type(value)


def test_codec_keeps_nan():
    assert math.isnan(launcher.decode(launcher.encode(float("nan"))))


@pytest.mark.parametrize("value", [
    object(), lambda: 1, type("E", (int,), {"__eq__": lambda s, o: True})(3), [1, object()], {"k": print},
])
def test_codec_refuses_anything_but_plain_data(value):
    with pytest.raises(launcher.Unencodable):
        launcher.encode(value)


@pytest.mark.parametrize("data", [
    b"", b"X", b"i\x00\x00\x00\x05ab", b"s\xff\xff\xff\xffabc", b"l\x7f\xff\xff\xff", b"f\x00",
    b"NN", b"d\x00\x00\x00\x01l\x00\x00\x00\x00N",  # unhashable key
    b"l\x00\x00\x00\x01" * 500 + b"N",  # too deep
])
def test_codec_rejects_malformed_bytes(data):
    with pytest.raises((ValueError, TypeError)):
        launcher.decode(data)


def test_codec_does_not_allocate_from_claimed_lengths():
    # A list claiming 2**32-1 items in a 5-byte message is refused at once.
    with pytest.raises(ValueError, match="truncated"):
        launcher.decode(b"l" + struct.pack(">I", 2**32 - 1))


def test_metrics_from_outcomes():
    out = ["passed", "failed", "timeout", "passed"]
    assert metrics.pu(predictions=[out]) == 0.5
    assert metrics.n_samples(predictions=[out]) == 4 and metrics.n_passed(predictions=[out]) == 2
    assert metrics.pu_censored(predictions=[out]) == 0
    assert metrics.pu(predictions=[[True, False]]) == 0.5
    assert metrics.pass_at_k(predictions=[out], k=[1, 4]) == {"pass@1": 0.5, "pass@4": 1.0}


def test_censored_instance_has_one_sided_upper_bound():
    out = ["failed"] * 20
    assert metrics.pu_censored(predictions=[out]) == 1
    lo, hi = metrics.pu_interval(predictions=[out])
    assert lo == 0.0 and hi == pytest.approx(1 - 0.05 ** (1 / 20))


def test_metric_errors_say_what_to_do():
    with pytest.raises(ValueError, match="passuntil_execute"):
        metrics.pu(predictions=["def f(): pass"])  # raw text: no execution filter
    with pytest.raises(ValueError, match="no samples"):
        metrics.pu(predictions=[[]])
    with pytest.raises(ValueError, match="raise `repeats`"):
        metrics.pass_at_k(predictions=[["passed"] * 3], k=[1, 10])
    with pytest.raises(ValueError, match="unrecognised outcome"):
        metrics.pu(predictions=[[1.5]])
