"""The kernels' loop layouts: a flat loop when nothing depends on the row,
rows with per-column parameters otherwise, and the single-column case between."""
import numpy as np
import pytest

import fastloss
import fastloss.reference
from helpers import assert_close


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_columns", [1, 3, 700])
@pytest.mark.parametrize("weighted", [False, True])
def test_per_column_pos_weight_in_every_layout(dtype, n_columns, weighted):
    rng = np.random.default_rng(n_columns)
    logits = (rng.standard_normal((9, n_columns)) * 3).astype(dtype)
    target = rng.random((9, n_columns)).astype(dtype)
    pos_weight = np.linspace(0.25, 3.0, n_columns)
    weight = rng.random(9) if weighted else None
    for reduction in ("mean", "sum", "none"):
        fast = fastloss.binary_cross_entropy(logits, target, pos_weight=pos_weight,
                                             sample_weight=weight, reduction=reduction)
        ref = fastloss.reference.binary_cross_entropy(logits, target, pos_weight=pos_weight,
                                                      sample_weight=weight, reduction=reduction)
        assert_close(fast.loss, ref.loss, dtype, scale=10.0)
        assert_close(fast.grad, ref.grad, dtype)


def _short_rows(rng, n_rows, n_classes):
    """float32 logits with a few NaN, +inf and -inf rows, and labels with some ignored."""
    logits = (rng.standard_normal((n_rows, n_classes)) * 4).astype(np.float32)
    logits[3, 0] = np.nan
    logits[70, -1] = np.inf
    logits[71, :] = -np.inf
    logits[130, 0] = 80.0          # p_y -> 1 or -> 0 for that row
    labels = rng.integers(0, n_classes, n_rows)
    labels[::17] = -100
    return logits, labels


SHORT_ROW_OPTIONS = {
    "plain": {},
    "ignore": {"ignore_index": -100},
    "smoothing+weights": {"ignore_index": -100, "label_smoothing": 0.2,
                          "class_weight": "linspace"},
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("option", list(SHORT_ROW_OPTIONS))
@pytest.mark.parametrize("n_classes", [1, 2, 10, 16, 17])
def test_short_rows_blocked_and_row_by_row_agree_bitwise(n_classes, option, n_threads):
    """float32 rows of <= 16 classes with labels are taken 64 rows at a time
    (the exps of a block in one pass), except when the gradient overwrites the
    logits, which keeps the row-by-row path: both give the same bits, and so
    does grad=False (blocked into a scratch buffer)."""
    rng = np.random.default_rng(n_classes)
    logits, labels = _short_rows(rng, 200, n_classes)     # 3 full blocks and a partial one
    if option == "plain":
        labels = np.where(labels < 0, 0, labels)
    kwargs = dict(SHORT_ROW_OPTIONS[option])
    if kwargs.get("class_weight") == "linspace":
        kwargs["class_weight"] = np.linspace(0.5, 2.0, n_classes)
    kwargs.update(reduction="none", n_threads=n_threads)
    before = logits.copy()
    blocked = fastloss.softmax_cross_entropy(logits, labels, hess=True, **kwargs)
    no_grad = fastloss.softmax_cross_entropy(logits, labels, grad=False, **kwargs)
    np.testing.assert_array_equal(logits, before)
    in_place = logits.copy()
    row_by_row = fastloss.softmax_cross_entropy(in_place, labels, out=in_place, hess=True,
                                                **kwargs)
    np.testing.assert_array_equal(blocked.loss, row_by_row.loss)
    np.testing.assert_array_equal(blocked.grad, row_by_row.grad)
    np.testing.assert_array_equal(blocked.hess, row_by_row.hess)
    np.testing.assert_array_equal(no_grad.loss, blocked.loss)
    reference = fastloss.reference.softmax_cross_entropy(logits, labels, **kwargs)
    assert_close(blocked.loss, reference.loss, np.float32, scale=10.0)
    assert_close(blocked.grad, reference.grad, np.float32)
