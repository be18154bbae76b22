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
