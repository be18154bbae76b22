"""Arrays of more than 2**31 elements: index arithmetic must be 64-bit.

One softmax_cross_entropy call, in place (out=logits), on a float32 array of
(2**21 + 1) x 1024 = 2**31 + 1024 elements (8.6 GB): its last row starts at
element 2**31, past every 32-bit index.  Run it alone with::

    python -m pytest -m largemem tests/test_large.py

The rows are built so that the loss and gradient are known in closed form:
row i holds 0 everywhere except v_i at its label y_i, so with C classes

    p_y = e^v / (e^v + C - 1),   p_c = 1 / (e^v + C - 1)  (c != y)
    loss_i = log(e^v + C - 1) - v = log1p((C - 1) e^-v)
    grad_i = p - onehot(y)
"""
import numpy as np
import pytest

import fastloss

N_CLASSES = 1024
N_ROWS = 2**21 + 1
PATTERN = np.array([-3.0, -1.5, 0.0, 0.5, 2.0, 4.0, 9.0])     # v_i = PATTERN[i % 7]


def available_memory():
    """Bytes of memory the kernel says are available (Linux), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def expected_rows(rows, v, labels):
    """Closed-form gradient rows (float64) of the given row indices."""
    denominator = np.exp(v[rows]) + N_CLASSES - 1
    grad = np.repeat((1.0 / denominator)[:, None], N_CLASSES, axis=1)
    grad[np.arange(len(rows)), labels[rows]] = -(N_CLASSES - 1) / denominator
    return grad


@pytest.mark.largemem
def test_softmax_cross_entropy_in_place_beyond_2_31_elements():
    needed = N_ROWS * N_CLASSES * 4
    assert needed > 2**33 and N_ROWS * N_CLASSES > 2**31
    memory = available_memory()
    if memory is not None and memory < needed + 2**30:
        pytest.skip(f"needs {needed / 2**30:.1f} GiB free, {memory / 2**30:.1f} GiB available")

    rows = np.arange(N_ROWS)
    v = PATTERN[rows % len(PATTERN)]
    labels = (rows * 37) % N_CLASSES
    logits = np.zeros((N_ROWS, N_CLASSES), dtype=np.float32)
    logits[rows, labels] = v.astype(np.float32)

    loss, grad = fastloss.softmax_cross_entropy(logits, labels, out=logits)
    assert grad is logits

    # the mean loss, in closed form: the mean over the pattern's row counts
    per_pattern = np.log1p((N_CLASSES - 1) * np.exp(-PATTERN))
    counts = np.bincount(rows % len(PATTERN), minlength=len(PATTERN))
    expected_loss = float(np.sum(counts * per_pattern)) / N_ROWS
    # Each row's loss is log1p(S) - z_y with S summed from exponentials
    # accurate to 1e-8 relative (the float32-row exp, tests/test_vecmath.py),
    # so each row, and so the mean, errs by less than 1e-8 absolute; a single
    # row computed wrongly (or skipped) moves the mean by at least
    # min(per_pattern) / N_ROWS = 5.7e-8.
    assert abs(loss - expected_loss) < 1e-8
    assert per_pattern.min() / N_ROWS > 5e-8

    # gradient rows: the first, a spread through the middle, and the last,
    # whose elements lie beyond index 2**31 (mean: divided by N)
    checked = np.unique(np.concatenate([
        np.arange(64), np.linspace(0, N_ROWS - 1, 257).astype(np.int64),
        np.arange(2**21 - 64, N_ROWS)]))
    expected = expected_rows(checked, v, labels) / N_ROWS
    np.testing.assert_allclose(grad[checked], expected, rtol=4e-7, atol=0)
    # and every row's label column, the one entry that differs per row
    np.testing.assert_allclose(grad[rows, labels], -(N_CLASSES - 1) / (np.exp(v) + N_CLASSES - 1)
                               / N_ROWS, rtol=4e-7, atol=0)
