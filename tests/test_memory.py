"""A call allocates nothing but the arrays it returns.

NumPy reports every array allocation to tracemalloc, so the peak of traced
memory during a call is a deterministic measure (unlike time): it must not
exceed the gradient (and, for reduction="none", the per-sample losses) that
the call returns, plus a small allowance for Python objects and per-thread
scratch.  With ``out=`` the gradient is not allocated at all.
"""
import numpy as np
import pytest

import cases
import fastloss
from helpers import peak_bytes

# Python objects of one call (tuples, memoryview structs, small arrays of
# parameters) and O(threads x C) scratch: far below one array of N elements.
SLACK = 64 * 1024
N = 200_000          # 0.8 MB of float32: any hidden temporary would show


def returned_bytes(result):
    total = 0
    for part in result:
        if isinstance(part, np.ndarray):
            total += part.nbytes
    return total


def elementwise_inputs(name, dtype, shape=(N,)):
    return CASES_BY_NAME[name].make_inputs(np.random.default_rng(0), shape, dtype)


# Every registered elementwise loss, by the inputs of its test case.
CASES_BY_NAME = {case.name: case for case in cases.ELEMENTWISE}
ELEMENTWISE = list(CASES_BY_NAME)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_allocates_only_what_it_returns(name, dtype, reduction):
    pred, target = elementwise_inputs(name, dtype)
    function = getattr(fastloss, name)
    weight = np.random.default_rng(1).random(N)
    for kwargs in ({}, {"sample_weight": weight}, {"n_threads": 2}):
        peak, result = peak_bytes(lambda: function(pred, target, reduction=reduction, **kwargs))
        assert result.grad.nbytes == pred.nbytes
        assert peak <= returned_bytes(result) + SLACK, (kwargs, peak, returned_bytes(result))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_with_out_allocates_nothing(name):
    pred, target = elementwise_inputs(name, np.float32)
    out = np.empty_like(pred)
    peak, result = peak_bytes(lambda: getattr(fastloss, name)(pred, target, out=out))
    assert result.grad is out
    assert peak <= SLACK, peak
    in_place = pred.copy()
    peak, result = peak_bytes(lambda: getattr(fastloss, name)(in_place, target, out=in_place))
    assert peak <= SLACK, peak


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_without_gradient_allocates_nothing(name):
    pred, target = elementwise_inputs(name, np.float32)
    peak, result = peak_bytes(lambda: getattr(fastloss, name)(pred, target, grad=False))
    assert result.grad is None
    assert peak <= SLACK, peak


def test_binary_cross_entropy_per_column_pos_weight():
    pred, target = elementwise_inputs("binary_cross_entropy", np.float32, (N // 8, 8))
    pos_weight = np.linspace(0.5, 2.0, 8)
    peak, result = peak_bytes(lambda: fastloss.binary_cross_entropy(pred, target,
                                                                    pos_weight=pos_weight))
    assert peak <= returned_bytes(result) + SLACK, peak


@pytest.mark.parametrize("shape", [(20_000, 10), (200, 1_000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_allocates_only_what_it_returns(shape, dtype):
    if not hasattr(fastloss, "softmax_cross_entropy"):
        pytest.skip("no multiclass kernels")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    for reduction in ("mean", "none"):
        peak, result = peak_bytes(lambda: fastloss.softmax_cross_entropy(
            logits, labels, reduction=reduction))
        assert peak <= returned_bytes(result) + SLACK, (reduction, peak)
    out = np.empty_like(logits)
    peak, result = peak_bytes(lambda: fastloss.softmax_cross_entropy(logits, labels, out=out))
    assert result.grad is out
    assert peak <= SLACK, peak
