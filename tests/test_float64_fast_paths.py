"""The float64 fast paths (double lanes, x86-64-v3 build) against the NumPy reference.

softmax_cross_entropy takes an exp pass in double lanes for an "ordinary"
float64 row (no NaN, |max| < 2^30, every logit within 700 of the maximum:
fl_row_exp_sum_double) and the careful path for any other row;
binary_cross_entropy takes its float64 spans in double lanes
(fl_bce_span_double), the last elements of a span through masks.  Here both
are held to the reference on rows of many lengths (every remainder modulo the
vector width), with every option, and a row just inside and just outside the
fast path's limits is held to its careful twin.
"""
import numpy as np
import pytest

import fastloss
from fastloss import reference

RTOL = 1e-13        # far below a float32 ulp, a few dozen float64 ulps


def close(got, want, scale):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)


CE_OPTIONS = {
    "plain": ({}, False),
    "class_weight": ({"class_weight": "w"}, False),
    "label_smoothing": ({"label_smoothing": 0.2}, False),
    "sample_weight": ({}, True),
    "ignore_index": ({"ignore_index": 2}, False),
    "everything": ({"class_weight": "w", "label_smoothing": 0.1, "ignore_index": 2}, True),
}


@pytest.mark.parametrize("option", CE_OPTIONS)
@pytest.mark.parametrize("hess", [False, True])
@pytest.mark.parametrize("n_classes", [1, 2, 3, 5, 8, 13, 16, 17, 100, 1003])
def test_softmax_cross_entropy_float64_matches_reference(n_classes, option, hess):
    rng = np.random.default_rng(n_classes)
    kwargs, weighted = CE_OPTIONS[option]
    kwargs = dict(kwargs)
    if kwargs.get("class_weight") == "w":
        kwargs["class_weight"] = rng.uniform(0.5, 2.0, n_classes)
    n = 37
    x = rng.normal(0, 4, (n, n_classes))
    x[3] += 1e5                                    # large logits, still ordinary
    x[4, : n_classes // 2] -= 650                  # a wide row, still ordinary
    x[5, 0] = x[5].max()                           # a tie at the maximum
    labels = rng.integers(0, n_classes, n)
    if weighted:
        kwargs["sample_weight"] = rng.uniform(0.5, 1.5, n)
    got = fastloss.softmax_cross_entropy(x, labels, reduction="none", hess=hess, **kwargs)
    want = reference.softmax_cross_entropy(x, labels, reduction="none", hess=hess, **kwargs)
    close(got.loss, want.loss, 1.0)
    close(got.grad, want.grad, 1.0)
    if hess:
        close(got.hess, want.hess, 1.0)
        plain = fastloss.softmax_cross_entropy(x, labels, reduction="none", **kwargs)
        np.testing.assert_array_equal(got.loss, plain.loss)
        np.testing.assert_array_equal(got.grad, plain.grad)


@pytest.mark.parametrize("spread", [699.0, 701.0, 1e4])
def test_softmax_cross_entropy_float64_at_the_fast_path_limit(spread):
    """A row whose lowest logit is `spread` below its maximum (fast up to 700,
    careful beyond) against the reference, also in place."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (4, 40))
    x[:, 5] = x.max(axis=1) - spread
    labels = np.array([5, 0, 1, 2])
    want = reference.softmax_cross_entropy(x, labels, reduction="none")
    got = fastloss.softmax_cross_entropy(x, labels, reduction="none")
    close(got.loss, want.loss, 1.0)
    close(got.grad, want.grad, 1.0)
    inplace = x.copy()
    fastloss.softmax_cross_entropy(inplace, labels, reduction="none", out=inplace)
    np.testing.assert_array_equal(inplace, got.grad)


BCE_OPTIONS = {
    "plain": {},
    "pos_weight": {"pos_weight": 2.5},
    "pos_weight_per_column": {"pos_weight": "columns"},
    "sample_weight": {"sample_weight": "rows"},
}


@pytest.mark.parametrize("option", BCE_OPTIONS)
@pytest.mark.parametrize("hess", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (1, 8), (1, 13), (5, 7), (3, 64), (1, 1029)])
def test_binary_cross_entropy_float64_matches_reference(shape, option, hess):
    rng = np.random.default_rng(shape[1])
    x = rng.normal(0, 5, shape)
    flat = x.reshape(-1)
    extremes = [0.0, -0.0, 1e-300, 36.0, -36.0, 700.0, -745.0, 760.0, 1e4, -1e4, 3e38, -1e300]
    flat[: len(extremes)] = extremes[: flat.size]
    t = rng.uniform(0, 1, shape)
    t.reshape(-1)[::3] = 0.0
    t.reshape(-1)[1::4] = 1.0
    kwargs = dict(BCE_OPTIONS[option])
    if kwargs.get("pos_weight") == "columns":
        kwargs["pos_weight"] = rng.uniform(0.5, 3.0, shape[1])
    if kwargs.get("sample_weight") == "rows":
        kwargs["sample_weight"] = rng.uniform(0.5, 1.5, shape[0])
    got = fastloss.binary_cross_entropy(x, t, reduction="none", hess=hess, **kwargs)
    want = reference.binary_cross_entropy(x, t, reduction="none", hess=hess, **kwargs)
    close(got.loss, want.loss, 1.0)
    close(got.grad, want.grad, 1.0)
    if hess:
        close(got.hess, want.hess, 1e-300)
        plain = fastloss.binary_cross_entropy(x, t, reduction="none", **kwargs)
        np.testing.assert_array_equal(got.loss, plain.loss)
        np.testing.assert_array_equal(got.grad, plain.grad)
    total = fastloss.binary_cross_entropy(x, t, reduction="sum", **kwargs)
    close(total.loss, want.loss.sum(), 1.0)


def test_binary_cross_entropy_float64_special_values():
    x = np.array([np.inf, -np.inf, np.nan, np.inf, -np.inf, 0.0, 2.0, -3.0, 1.0])
    t = np.array([1.0, 0.0, 0.5, 0.0, 1.0, 0.5, 1.0, 0.0, 0.25])
    got = fastloss.binary_cross_entropy(x, t, reduction="none", hess=True)
    want = reference.binary_cross_entropy(x, t, reduction="none", hess=True)
    np.testing.assert_array_equal(np.isnan(got.loss), np.isnan(want.loss))
    close(got.loss, want.loss, 1.0)
    close(got.grad, want.grad, 1.0)
    close(got.hess, want.hess, 1e-300)
    with pytest.raises(ValueError):
        fastloss.binary_cross_entropy(x[:5], np.array([0.0, 1.0, 1.5, 0.0, 0.0]))
