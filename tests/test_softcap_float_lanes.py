"""The float lanes of soft-capped float32 rows against the exact oracle.

Rows of logits that cross the cap's thresholds of _vecmath.h (0.5 c, 0.9 c,
c where the near lanes end, 32 c where the products of the exps and the
slopes give way to the two stored apart, 40 c), blocks that mix near and far
logits, rows whose largest |x| lies just either side of c and 32 c (the
label at the row's largest |x| or not), and caps about the float-lane
limit (c <= 6, a float), each within the accuracy budgets of
tests/test_multiclass_more.py (float32: 4 ulp per sample, 8 gradient); and
rows of the small lanes of larger caps up to their bound (|x| <= c / 2 and
|x|^3 <= 3 c^2, where the correction x - c tanh(x / c) reaches 1), and just
past it (the float64 lanes).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastloss
from fastloss import _dispatch
import oracle
import oracle_more_multiclass as more

BUDGET = {"per_sample": 4.0, "grad": 8.0}


@pytest.fixture(autouse=True, params=["16 lanes", "8 lanes"])
def lanes(request):
    """Every test twice: with the 16 AVX-512 lanes of the mid rows (where the CPU
    has AVX-512; skipped elsewhere) and with the 8 lanes every x86-64-v3 CPU runs."""
    kernels = _dispatch.multiclass_kernels
    wanted = request.param == "16 lanes"
    if kernels.set_wide_lanes(wanted) != wanted:
        kernels.set_wide_lanes(_dispatch.WIDE_LANES)
        pytest.skip("this CPU (or build) has no AVX-512 lanes")
    yield request.param
    kernels.set_wide_lanes(_dispatch.WIDE_LANES)


def _check_within_budget(logits, labels, cap):
    result = fastloss.softmax_cross_entropy(logits, labels, softcap=cap, reduction="none")
    exact = more.softmax_cross_entropy(logits, labels, softcap=cap, backend=oracle.F64)
    loss_error = oracle.ulp_error(result.loss, exact.loss, np.float32, exact.loss_scale)
    grad_error = oracle.ulp_error(result.grad, exact.grad, np.float32, exact.grad_scale)
    assert np.max(loss_error) <= BUDGET["per_sample"], np.max(loss_error)
    assert np.max(grad_error) <= BUDGET["grad"], np.max(grad_error)
    in_place = logits.copy()
    again = fastloss.softmax_cross_entropy(in_place, labels, softcap=cap, reduction="none",
                                           out=in_place)
    np.testing.assert_array_equal(again.loss, result.loss)
    np.testing.assert_array_equal(in_place, result.grad)


def _rows(cap, n_classes, rng):
    edges = np.array([0.5, 0.9, 1.0, 32.0, 40.0]) * cap
    f32 = np.float32
    rows = [
        rng.normal(0.0, 2.0, n_classes),                     # the benchmark's logits
        rng.normal(0.0, 0.3 * cap, n_classes),              # near blocks only
        rng.normal(0.0, 3.0 * cap, n_classes),              # near and far blocks
        rng.uniform(-40.0 * cap, 40.0 * cap, n_classes),    # far, to the limit
    ]
    edge = np.concatenate([[np.nextafter(f32(e), f32(0)), f32(e), np.nextafter(f32(e), f32(np.inf))]
                           for e in edges])
    edge = np.concatenate([edge, -edge])
    rows.append(np.resize(edge, n_classes))
    # the largest |x| just below, at and just above the near bound c and the
    # products' bound 32 c (the first logit; the label there or not in the test)
    for bound in (cap, 32.0 * cap):
        for top in (np.nextafter(f32(bound), f32(0)), f32(bound),
                    np.nextafter(f32(bound), f32(np.inf))):
            for sign in (1.0, -1.0):
                row = rng.uniform(-0.8, 0.8, n_classes) * float(top)
                row[0] = sign * top
                rows.append(row)
    # one extreme logit among near ones: the careful path's rows (largest |x| past 40 c)
    for extreme in (np.inf, -np.inf, 3e38, -3e38):
        row = rng.uniform(-1.0, 1.0, n_classes) * cap
        row[1] = extreme
        rows.append(row)
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("cap", [0.75, 2.5, 3.0, 5.0, 6.0, 6.5, 5.1])
@pytest.mark.parametrize("n_classes", [7, 40, 1000])
def test_float_lanes_within_budget(cap, n_classes):
    rng = np.random.default_rng(int(cap * 100) + n_classes)
    logits = _rows(cap, n_classes, rng)
    labels = rng.integers(0, n_classes, logits.shape[0])
    labels[4] = 0
    labels[5:] = 0                                  # at the row's largest |x|
    labels[5::2] = 1                                # or not
    _check_within_budget(logits, labels, cap)


@pytest.mark.parametrize("cap", [0.75, 5.0, 6.0])
def test_float_lanes_nan_row(cap):
    """A NaN row (the careful path) among float-lane rows: its loss is NaN, the others exact."""
    rng = np.random.default_rng(7)
    logits = rng.uniform(-1.5, 1.5, (3, 40)).astype(np.float32) * np.float32(cap)
    logits[1, 5] = np.nan
    labels = np.array([0, 1, 2])
    result = fastloss.softmax_cross_entropy(logits, labels, softcap=cap, reduction="none")
    assert np.isnan(result.loss[1])
    assert np.all(np.isnan(result.grad[1]))
    keep = [0, 2]
    _check_within_budget(logits[keep], labels[keep], cap)
    alone = fastloss.softmax_cross_entropy(logits[keep], labels[keep], softcap=cap,
                                           reduction="none")
    np.testing.assert_array_equal(result.loss[keep], alone.loss)
    np.testing.assert_array_equal(result.grad[keep], alone.grad)


def _small_rows(cap, n_classes, rng):
    bound = min(0.5 * cap, (3.0 * cap * cap) ** (1.0 / 3.0))
    f32 = np.float32
    b = f32(bound)
    below = b if float(b) <= bound else np.nextafter(b, f32(0))
    rows = [
        rng.normal(0.0, 3.0, n_classes),                          # std-3 logits
        rng.uniform(-bound, bound, n_classes),                    # to the bound
        rng.uniform(0.7, 1.0, n_classes) * bound * rng.choice([-1.0, 1.0], n_classes),
        rng.normal(0.0, bound / 3.0, n_classes),
        rng.uniform(-1.05, 1.05, n_classes) * bound,              # past it: float64 lanes
    ]
    rows = np.array(rows, dtype=np.float32)
    rows[1:4, 0] = below                                          # the bound itself, the max
    rows[2, 1] = -below
    return rows


@pytest.mark.parametrize("cap", [7.5, 12.0, 30.0, 100.0, 1000.0])
@pytest.mark.parametrize("n_classes", [7, 40, 1000])
def test_small_lanes_within_budget(cap, n_classes):
    rng = np.random.default_rng(int(cap) + n_classes)
    logits = _small_rows(cap, n_classes, rng)
    labels = rng.integers(0, n_classes, logits.shape[0])
    labels[1:3] = 0
    _check_within_budget(logits, labels, cap)


@pytest.mark.parametrize("cap", [0.75, 5.0, 6.0, 30.0, 1000.0])
@pytest.mark.parametrize("n_classes", [7, 40, 1000])
def test_float_lanes_label_positions(cap, n_classes):
    """The float lanes sum the terms relative to the label's and leave its term
    out in the one block that holds it: labels at the edges of the lanes'
    blocks of 8, 16 and 32 and in the tail, at the row's largest logit (ties
    there, or not), at the smallest, and equal to other logits."""
    rng = np.random.default_rng(int(cap) + n_classes)
    # small lanes for the large caps (|x| <= c / 2, |x|^3 <= 3 c^2), near and
    # far lanes for the small ones
    bound = min(0.5 * cap, (3.0 * cap * cap) ** (1.0 / 3.0)) if cap > 6.0 else 1.5 * cap
    positions = sorted({p for p in (0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 991, 992,
                                    n_classes - 8, n_classes - 1) if 0 <= p < n_classes})
    rows, labels = [], []
    for p in positions:
        row = rng.uniform(-0.9, 0.9, n_classes) * bound
        rows.append(row.copy())                          # the label anywhere
        labels.append(p)
        top = row.copy()
        top[p] = 0.99 * bound                            # the label at the maximum
        rows.append(top)
        labels.append(p)
        tied = top.copy()
        tied[(p + 3) % n_classes] = tied[p]              # and tied there
        rows.append(tied)
        labels.append(p)
        low = row.copy()
        low[p] = -0.99 * bound                           # at the minimum
        rows.append(low)
        labels.append(p)
        equal = row.copy()
        equal[:] = equal[p]                              # every logit the label's
        rows.append(equal)
        labels.append(p)
    _check_within_budget(np.array(rows, dtype=np.float32), np.array(labels), cap)


@pytest.mark.parametrize("label_at", ["max", "min"])
def test_small_lanes_widest_span(label_at):
    """Small-lane rows whose capped logits span nearly 85 (the ordinary rows'
    limit), the label at either end: the terms relative to the label reach
    exp(+-84), still normal floats."""
    cap = 1000.0
    rng = np.random.default_rng(11)
    rows = rng.uniform(-42.0, 42.0, (6, 1000))
    rows[:, 3] = 42.0
    rows[:, 900] = -42.0
    labels = np.full(6, 3 if label_at == "max" else 900)
    _check_within_budget(rows.astype(np.float32), labels, cap)


@pytest.mark.parametrize("cap", [5.0, 30.0])
@pytest.mark.parametrize("where", [0, 31, 32, 995])
def test_float_lanes_extreme_logit_anywhere(cap, where):
    """The float lanes' rows are told apart by their largest |x| (the bits of
    |x|, NaN above inf): one NaN of either sign, in the vector part or the
    tail, makes the row NaN; +-inf and +-3e38 send it to the float64 lanes
    or the careful path, within the budgets."""
    rng = np.random.default_rng(where)
    base = rng.uniform(-0.4, 0.4, 1000) * cap
    nan_rows = []
    for value in (np.nan, -np.nan, np.float32(np.nan) * -1):
        row = base.copy()
        row[where] = value
        nan_rows.append(row)
    nan_rows = np.array(nan_rows, dtype=np.float32)
    result = fastloss.softmax_cross_entropy(nan_rows, np.array([1, 2, 3]), softcap=cap,
                                            reduction="none")
    assert np.all(np.isnan(result.loss)) and np.all(np.isnan(result.grad))
    rows = []
    for value in (np.inf, -np.inf, 3e38, -3e38):
        row = base.copy()
        row[where] = value
        rows.append(row)
    _check_within_budget(np.array(rows, dtype=np.float32), np.array([where, 1, where, 2]), cap)


def test_small_lanes_span_shortcut():
    """A large cap's small-lane rows pass without the exact span when
    2 c tanh(max |x| / c) <= 84, and are measured exactly past it: rows
    either side of 84 whose span is small, and rows whose span passes 85
    (the careful path)."""
    cap = 1000.0
    rng = np.random.default_rng(3)
    edge = np.float32(cap * np.arctanh(42.0 / cap))      # 2 c tanh(edge / c) = 84
    rows = []
    for top in (np.nextafter(edge, np.float32(0)), edge, np.nextafter(edge, np.float32(np.inf)),
                np.float32(42.9), np.float32(44.0)):
        rows.append(rng.uniform(0.95, 1.0, 1000) * top)          # one-sided: a small span
        symmetric = rng.uniform(-1.0, 1.0, 1000) * top           # the span about 2 top
        symmetric[0], symmetric[1] = top, -top
        rows.append(symmetric)
    labels = rng.integers(0, 1000, len(rows))
    labels[::3] = 0
    _check_within_budget(np.array(rows, dtype=np.float32), labels, cap)


@pytest.mark.parametrize("cap", [0.75, 5.0, 6.0])
@pytest.mark.parametrize("n_classes", [1, 15, 16, 17, 31, 32, 33, 1000, 3000])
def test_block_edges_within_budget(cap, n_classes):
    """Rows of every length about the block sizes (8 lanes, 16 lanes, steps of
    32), with logits beyond the near bound at the blocks' first and last lanes
    (the 16 lanes take those apart) and the label among them or not, within the
    budgets, in place or not."""
    rng = np.random.default_rng(n_classes)
    logits = rng.normal(0.0, 0.5 * cap, (64, n_classes))
    logits[::3, ::16] = 1.5 * cap
    logits[1::3, 15::16] = -2.0 * cap
    labels = rng.integers(0, n_classes, 64)
    labels[::4] = 0                                      # a far logit's class
    _check_within_budget(logits.astype(np.float32), labels, cap)
