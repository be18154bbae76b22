"""The multiclass losses and row utilities: fast kernels against the NumPy reference,
the reference against finite differences and scipy, extreme rows, bad input."""
import functools

import numpy as np
import pytest

import fastloss
import fastloss.reference as reference
from helpers import assert_close, assert_unchanged, finite_difference_gradient, snapshot

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]

# (N, C) = (7_000, 5): two chunks of rows, so that two threads split the work.
N_ROWS, N_CLASSES = 7_000, 5


def make_logits(rng, n_rows=N_ROWS, n_classes=N_CLASSES, dtype=np.float64, scale=3.0):
    return (scale * rng.standard_normal((n_rows, n_classes))).astype(dtype)


def make_labels(rng, n_rows=N_ROWS, n_classes=N_CLASSES):
    return rng.integers(0, n_classes, n_rows)


def make_probabilities(rng, n_rows=N_ROWS, n_classes=N_CLASSES, dtype=np.float64):
    t = rng.dirichlet(np.full(n_classes, 0.5), n_rows)
    if n_classes > 1:
        t[::7, 0] = 0.0                      # exact zeros: 0 log 0 = 0
        t[::7] /= t[::7].sum(axis=1, keepdims=True)
    return t.astype(dtype)


def class_weight(n_classes=N_CLASSES):
    return np.linspace(0.5, 2.0, n_classes)


# (function name, target kind, keyword arguments): every option of every loss.
CASES = [
    ("softmax_cross_entropy", "labels", {}),
    ("softmax_cross_entropy", "labels",
     {"class_weight": class_weight(), "ignore_index": 2, "label_smoothing": 0.1}),
    ("softmax_cross_entropy", "labels", {"class_weight": class_weight(), "ignore_index": -100}),
    ("softmax_cross_entropy", "probabilities", {}),
    ("softmax_cross_entropy", "probabilities",
     {"class_weight": class_weight(), "label_smoothing": 0.2}),
    ("softmax_binary_cross_entropy", "labels", {}),
    ("softmax_binary_cross_entropy", "probabilities", {}),
    ("kl_divergence", "probabilities", {}),
    ("multiclass_hinge", "labels", {}),
    ("multiclass_hinge", "labels", {"kind": "crammer_singer", "squared": True, "margin": 0.5}),
    ("multiclass_hinge", "labels", {"kind": "weston_watkins", "squared": True}),
    ("multiclass_hinge", "labels", {"kind": "crammer_singer"}),
]
CASE_IDS = ["-".join([name, kind] + sorted(kwargs)) for name, kind, kwargs in CASES]
# The big grid below runs every option at least once, not every case.
GRID_CASES = [0, 1, 3, 4, 5, 6, 7, 8, 9]

# (out, layout): out None / a fresh array / the logits themselves, and logits that
# are C-contiguous, read-only or strided.  In place needs writeable contiguous logits.
OUT_LAYOUTS = [(out, layout) for out in ("none", "fresh", "inplace")
               for layout in ("contiguous", "readonly", "strided")
               if out != "inplace" or layout == "contiguous"]


def make_target(rng, kind, dtype, n_rows=N_ROWS, n_classes=N_CLASSES, ignore_index=None):
    if kind == "probabilities":
        return make_probabilities(rng, n_rows, n_classes, dtype)
    labels = make_labels(rng, n_rows, n_classes)
    if ignore_index is not None:
        labels[::5] = ignore_index
    return labels


def with_layout(x, layout):
    if layout == "contiguous":
        x = x.copy()
    elif layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    elif layout == "strided":
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
        wide[:, ::2] = x
        x = wide[:, ::2]
        assert not x.flags.c_contiguous
    return x


@functools.lru_cache(maxsize=None)
def reference_result(case, dtype, reduction, weighted):
    """Inputs and reference result of one grid point, computed once for every out/layout."""
    name, target_kind, kwargs = CASES[case]
    rng = np.random.default_rng(0)
    logits = make_logits(rng, dtype=dtype)
    target = make_target(rng, target_kind, dtype, ignore_index=kwargs.get("ignore_index"))
    sample_weight = rng.uniform(0.0, 2.0, N_ROWS) if weighted else None
    expected = getattr(reference, name)(logits, target, sample_weight=sample_weight,
                                        reduction=reduction, **kwargs)
    for array in (logits, target, sample_weight, expected.loss, expected.grad):
        if isinstance(array, np.ndarray):
            array.flags.writeable = False
    return logits, target, sample_weight, expected


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("out_kind,layout", OUT_LAYOUTS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GRID_CASES, ids=[CASE_IDS[i] for i in GRID_CASES])
def test_kernel_matches_reference(case, dtype, reduction, weighted, out_kind, layout,
                                  n_threads):
    name, _, kwargs = CASES[case]
    logits, target, sample_weight, expected = reference_result(case, dtype, reduction,
                                                               weighted)

    x = with_layout(logits, layout)
    out = None
    if out_kind == "fresh":
        out = np.full(logits.shape, np.nan, dtype)
    elif out_kind == "inplace":
        x = logits.copy()
        out = x
    before = snapshot(target, sample_weight) + ([] if out_kind == "inplace" else snapshot(x))
    loss, grad = getattr(fastloss, name)(x, target, sample_weight=sample_weight,
                                         reduction=reduction, out=out, n_threads=n_threads,
                                         **kwargs)
    assert_unchanged(before, [target, sample_weight] + ([] if out_kind == "inplace" else [x]))

    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == (N_ROWS,) and loss.dtype == dtype
    else:
        assert isinstance(loss, float)
    assert_close(loss, expected.loss, dtype)
    assert grad.shape == logits.shape and grad.dtype == dtype
    # The absolute tolerance follows the gradient's magnitude: a "mean"
    # divides every element by about N, and an unscaled atol would let an
    # error of several percent through on the small elements.
    assert_close(grad, expected.grad, dtype, scale=gradient_scale(expected.grad))
    if out is not None:
        assert grad is out and np.shares_memory(grad, out)


def gradient_scale(grad):
    """The largest |element| of a finite gradient (1 when it is all zero or not finite)."""
    finite = np.abs(grad[np.isfinite(grad)])
    largest = float(finite.max()) if finite.size else 0.0
    return largest if largest > 0 else 1.0


@pytest.mark.parametrize("name,target_kind,kwargs", CASES, ids=CASE_IDS)
def test_no_gradient_work_when_grad_false(name, target_kind, kwargs):
    rng = np.random.default_rng(1)
    logits = make_logits(rng, 40, 6)
    target = make_target(rng, target_kind, np.float64, 40, 6)
    kwargs = {k: (class_weight(6) if k == "class_weight" else v) for k, v in kwargs.items()}
    fast = getattr(fastloss, name)(logits, target, grad=False, **kwargs)
    slow = getattr(reference, name)(logits, target, grad=False, **kwargs)
    assert fast.grad is None and slow.grad is None
    assert_close(fast.loss, slow.loss, np.float64)


@pytest.mark.parametrize("name,target_kind,kwargs", CASES, ids=CASE_IDS)
def test_losses_are_identical_for_every_thread_count(name, target_kind, kwargs):
    rng = np.random.default_rng(2)
    logits = make_logits(rng, 40_000, N_CLASSES, np.float32)
    target = make_target(rng, target_kind, np.float32, 40_000)
    results = [getattr(fastloss, name)(logits, target, n_threads=n, **kwargs)
               for n in (1, 2, 3, None)]
    for loss, grad in results[1:]:
        assert loss == results[0].loss
        np.testing.assert_array_equal(grad, results[0].grad)


# --- the reference against finite differences ---------------------------------

def away_from_kinks(rng, n_rows, n_classes, margin):
    """Scores whose hinges margin + s_j - s_y are all at least 0.01 from 0."""
    while True:
        s = rng.standard_normal((n_rows, n_classes))
        gaps = margin + s[:, :, None] - s[:, None, :]
        if np.all(np.abs(gaps) > 1e-2) and np.all(np.abs(s[:, :, None] - s[:, None, :])
                                                  + np.eye(n_classes) > 1e-2):
            return s


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("name,target_kind,kwargs", CASES, ids=CASE_IDS)
def test_reference_gradient_matches_finite_differences(name, target_kind, kwargs, weighted,
                                                       reduction):
    rng = np.random.default_rng(3)
    n_rows, n_classes = 6, N_CLASSES
    if name == "multiclass_hinge":
        logits = away_from_kinks(rng, n_rows, n_classes, kwargs.get("margin", 1.0))
    else:
        logits = make_logits(rng, n_rows, n_classes, np.float64, scale=2.0)
    target = make_target(rng, target_kind, np.float64, n_rows, n_classes)
    if "ignore_index" in kwargs:
        target[1] = kwargs["ignore_index"]
    sample_weight = rng.uniform(0.5, 2.0, n_rows) if weighted else None
    function = getattr(reference, name)

    def loss_of(x):
        return function(x, target, sample_weight=sample_weight, reduction=reduction,
                        grad=False, **kwargs).loss

    _, grad = function(logits, target, sample_weight=sample_weight, reduction=reduction,
                       **kwargs)
    np.testing.assert_allclose(grad, finite_difference_gradient(loss_of, logits),
                               rtol=1e-7, atol=1e-9)


def test_none_reduction_gradient_is_the_gradient_of_the_sum():
    rng = np.random.default_rng(4)
    logits = make_logits(rng, 30, 4)
    labels = make_labels(rng, 30, 4)
    weight = rng.uniform(0, 2, 30)
    for module in (fastloss, reference):
        none = module.softmax_cross_entropy(logits, labels, sample_weight=weight,
                                            reduction="none", label_smoothing=0.1)
        total = module.softmax_cross_entropy(logits, labels, sample_weight=weight,
                                             reduction="sum", label_smoothing=0.1)
        assert_close(np.sum(none.loss), total.loss, np.float64, scale=30)
        assert_close(none.grad, total.grad, np.float64)


# --- row utilities --------------------------------------------------------------

UTILITIES = ["logsumexp", "softmax", "log_softmax"]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,out_kind,layout",
                         [(name, out, layout) for name in UTILITIES for out, layout in OUT_LAYOUTS
                          if not (name == "logsumexp" and out == "inplace")])
def test_utility_kernel_matches_reference(name, dtype, out_kind, layout, n_threads):
    rng = np.random.default_rng(5)
    logits = make_logits(rng, dtype=dtype, scale=30.0)
    expected = getattr(reference, name)(logits)
    out_shape = logits.shape[:1] if name == "logsumexp" else logits.shape
    x = with_layout(logits, layout)
    out = None
    if out_kind == "fresh":
        out = np.full(out_shape, np.nan, dtype)
    elif out_kind == "inplace":                # logsumexp's (N,) output cannot be x
        x = logits.copy()
        out = x
    before = [] if out_kind == "inplace" else snapshot(x)
    result = getattr(fastloss, name)(x, out=out, n_threads=n_threads)
    assert_unchanged(before, [] if out_kind == "inplace" else [x])
    assert result.shape == out_shape and result.dtype == dtype
    assert_close(result, expected, dtype, scale=30.0)
    if out is not None:
        assert result is out and np.shares_memory(result, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_utilities_match_scipy(module, dtype):
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(6)
    logits = make_logits(rng, 500, 37, dtype, scale=100.0)
    logits[0] = 1e4                                      # all equal, huge
    logits[1, 3] = -1e4
    wide = logits.astype(np.float64)
    assert_close(module.logsumexp(logits), special.logsumexp(wide, axis=1), dtype, scale=1e4)
    assert_close(module.softmax(logits), special.softmax(wide, axis=1), dtype)
    assert_close(module.log_softmax(logits), special.log_softmax(wide, axis=1), dtype,
                 scale=1e4)


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_utilities_on_infinite_nan_and_empty_rows(module):
    x = np.array([[np.inf, 0.0, 1.0],
                  [np.inf, np.inf, 0.0],
                  [-np.inf, -np.inf, -np.inf],
                  [-np.inf, 0.0, 0.0],
                  [np.nan, 0.0, 1.0],
                  [0.0, 1.0, 2.0]])
    lse = module.logsumexp(x)
    np.testing.assert_array_equal(lse[:5], [np.inf, np.inf, -np.inf, np.log(2), np.nan])
    p = module.softmax(x)
    np.testing.assert_array_equal(p[:4], [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3],
                                          [0, 0.5, 0.5]])
    assert np.all(np.isnan(p[4])) and np.all(np.isfinite(p[5]))
    log_p = module.log_softmax(x)
    np.testing.assert_array_equal(log_p[3], [-np.inf, -np.log(2), -np.log(2)])
    assert module.logsumexp(np.zeros((3, 0))).tolist() == [-np.inf] * 3
    assert module.softmax(np.zeros((3, 0))).shape == (3, 0)


# --- extreme rows ---------------------------------------------------------------

EXTREME_ROWS = [
    [1e4, -1e4, 0.0],
    [3e38, -3e38],
    [7.0, 7.0, 7.0, 7.0],
    [60.0, 0.0, 0.0],
    [-60.0, 0.0, 0.0],
    [2.5],
    [0.0, 1e-3],
    [-3e38, 3e38, 3e38],
]


def extreme_cases():
    for row in EXTREME_ROWS:
        n_classes = len(row)
        for label in range(n_classes):
            yield row, label


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row,label", list(extreme_cases()))
@pytest.mark.parametrize("name,target_kind,kwargs", CASES, ids=CASE_IDS)
def test_extreme_rows_are_finite_and_match_reference(name, target_kind, kwargs, row, label,
                                                     dtype):
    n_classes = len(row)
    logits = np.array([row], dtype)
    if target_kind == "labels":
        target = np.array([label])
    else:
        target = np.full((1, n_classes), 0.5 / n_classes, dtype)
        target[0, label] += 0.5
    if "class_weight" in kwargs:
        kwargs = dict(kwargs, class_weight=class_weight(n_classes))
    if kwargs.get("ignore_index") == 2 and n_classes > 2:
        kwargs = dict(kwargs, ignore_index=-1)          # keep the row
    fast = getattr(fastloss, name)(logits, target, reduction="sum", **kwargs)
    slow = getattr(reference, name)(logits, target, reduction="sum", **kwargs)
    # A squared hinge of +-3e38 has a gradient of about 1.2e39, beyond float32.
    representable = not (kwargs.get("squared") and dtype == np.float32
                         and np.max(np.abs(row)) > 1e19)
    assert np.isfinite(fast.loss) and np.isfinite(slow.loss)
    if representable:
        assert np.all(np.isfinite(fast.grad)) and np.all(np.isfinite(slow.grad))
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fast.grad, slow.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_extreme_rows_by_hand(dtype):
    x = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [3e38, -3e38, 0.0]], dtype)
    loss, grad = fastloss.softmax_cross_entropy(x, [0, 1, 1], reduction="none")
    # -log p_0 = log1p(e^-1e4 + e^-2e4) = 0 in floating point; -log p_1 = 2e4
    assert loss[0] == 0.0 and loss[1] == 2e4
    np.testing.assert_array_equal(grad[:2], [[0, 0, 0], [1, -1, 0]])
    total = fastloss.softmax_cross_entropy(x[2:], [1], reduction="sum").loss
    assert total == pytest.approx(6e38, rel=1e-6)     # finite although above float32's max


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_true_class_gradient_keeps_its_digits(module, dtype):
    special = pytest.importorskip("scipy.special")
    gap = 40.0
    # p_0 - 1 = -1 / (1 + e^gap): about -4.2e-18, far below float32's epsilon.
    _, grad = module.softmax_cross_entropy(np.array([[gap, 0.0]], dtype), [0], reduction="sum")
    expected = -special.expit(-gap)
    np.testing.assert_allclose(grad[0], [expected, -expected], rtol=1e-6 if dtype == np.float32
                               else 1e-14)
    # The same with a one-hot probability target.
    _, grad = module.softmax_cross_entropy(np.array([[gap, 0.0]], dtype),
                                           np.array([[1.0, 0.0]], dtype), reduction="sum")
    np.testing.assert_allclose(grad[0], [expected, -expected], rtol=1e-6 if dtype == np.float32
                               else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_binary_cross_entropy_without_cancellation(dtype):
    # Row [g, 0], label 1: -log p_1 - log(1 - p_0) = 2 (g + log1p(e^-g)), with
    # 1 - p_0 = p_1 underflowing to 0 if formed as a difference.
    gap = 1000.0
    loss, grad = fastloss.softmax_binary_cross_entropy(np.array([[gap, 0.0]], dtype), [1],
                                                       reduction="sum")
    assert loss == pytest.approx(2 * gap, rel=1e-12)
    np.testing.assert_allclose(grad, [[2.0, -2.0]], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_two_classes_equal_binary_cross_entropy(module, dtype):
    rng = np.random.default_rng(7)
    z = (10 * rng.standard_normal(300)).astype(dtype)
    z[:4] = [0.0, 40.0, -40.0, 1e4]
    y = rng.integers(0, 2, 300)
    logits = np.stack([np.zeros_like(z), z], axis=1)
    for reduction in REDUCTIONS:
        multi = module.softmax_cross_entropy(logits, y, reduction=reduction)
        binary = module.binary_cross_entropy(z, y.astype(dtype), reduction=reduction)
        assert_close(multi.loss, binary.loss, dtype, scale=1e4)
        assert_close(multi.grad[:, 1], binary.grad, dtype)
        assert_close(multi.grad[:, 0], -binary.grad, dtype)


@pytest.mark.parametrize("name,target_kind,kwargs", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_nan_stays_in_its_row(module, name, target_kind, kwargs):
    rng = np.random.default_rng(8)
    logits = make_logits(rng, 20, N_CLASSES)
    target = make_target(rng, target_kind, np.float64, 20, N_CLASSES)
    if "ignore_index" in kwargs:
        target[3] = 0
    clean = getattr(module, name)(logits, target, reduction="none", **kwargs)
    logits[3, 1] = np.nan
    dirty = getattr(module, name)(logits, target, reduction="none", **kwargs)
    assert np.isnan(dirty.loss[3]) and np.isnan(dirty.grad[3]).any()
    others = np.arange(20) != 3
    np.testing.assert_array_equal(dirty.loss[others], clean.loss[others])
    np.testing.assert_array_equal(dirty.grad[others], clean.grad[others])


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_infinite_logits_follow_the_documented_rule(module):
    x = np.array([[np.inf, 0.0, 1.0],        # the +inf class takes all the mass
                  [np.inf, np.inf, 0.0],     # two +inf classes share it
                  [-np.inf, 0.0, 0.0],       # a -inf class has probability 0
                  [-np.inf, -np.inf, -np.inf]])
    loss, grad = module.softmax_cross_entropy(x, [0, 0, 1, 2], reduction="none")
    np.testing.assert_allclose(loss, [0.0, np.log(2), np.log(2), np.log(3)])
    np.testing.assert_allclose(grad, [[0, 0, 0], [-0.5, 0.5, 0], [0, -0.5, 0.5],
                                      [1 / 3, 1 / 3, -2 / 3]])
    loss, grad = module.softmax_cross_entropy(x[:1], [1], reduction="none")
    assert loss[0] == np.inf and np.all(np.isfinite(grad))


# --- mean over nothing, ignore_index, labels of any integer dtype -------------------

@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_mean_over_nothing_is_zero(module):
    logits = np.ones((4, 3))
    for kwargs in ({"ignore_index": 1}, {"ignore_index": 1, "label_smoothing": 0.3},
                   {"class_weight": [0.0, 0.0, 1.0]}):
        loss, grad = module.softmax_cross_entropy(logits, [1, 1, 0, 1] if "class_weight" in
                                                  kwargs else [1, 1, 1, 1], **kwargs)
        assert loss == 0.0 and np.all(grad == 0)
    loss, grad = module.softmax_cross_entropy(np.ones((0, 3)), np.zeros(0, int))
    assert loss == 0.0 and grad.shape == (0, 3)
    loss, grad = module.kl_divergence(logits, np.full((4, 3), 1 / 3), sample_weight=np.zeros(4))
    assert loss == 0.0 and np.all(grad == 0)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                         np.uint32, np.int64, np.uint64])
def test_labels_of_any_integer_dtype(label_dtype):
    rng = np.random.default_rng(9)
    logits = make_logits(rng, 50, 4)
    labels = make_labels(rng, 50, 4)
    expected = reference.softmax_cross_entropy(logits, labels)
    for module in (fastloss, reference):
        result = module.softmax_cross_entropy(logits, labels.astype(label_dtype))
        assert_close(result.loss, expected.loss, np.float64)
        assert_close(result.grad, expected.grad, np.float64)


def test_ignored_rows_have_zero_loss_and_gradient():
    rng = np.random.default_rng(10)
    logits = make_logits(rng, 10, 4)
    labels = np.array([0, -100, 1, 2, -100, 3, 0, 1, 2, 3])
    for module in (fastloss, reference):
        loss, grad = module.softmax_cross_entropy(logits, labels, ignore_index=-100,
                                                  label_smoothing=0.2, reduction="none")
        assert np.all(loss[[1, 4]] == 0) and np.all(grad[[1, 4]] == 0)
        assert np.all(loss[labels != -100] > 0)


# --- bad input --------------------------------------------------------------------

def bad_input_cases():
    x = np.zeros((3, 4))
    labels = np.array([0, 1, 2])
    probabilities = np.full((3, 4), 0.25)
    ce = "softmax_cross_entropy"
    return [
        # (function, args, kwargs, exception, message fragments)
        (ce, (x, np.array([0, 4, 1])), {}, ValueError, ["target[1] = 4", "[0, 4)"]),
        (ce, (x, np.array([0, 1, -1])), {}, ValueError, ["target[2] = -1"]),
        (ce, (x, np.array([0, -100, 7])), {"ignore_index": -100}, ValueError,
         ["target[2] = 7", "ignore_index=-100"]),
        (ce, (x, np.array([0.0, 1.0, 2.0])), {}, TypeError, ["integer", "target"]),
        (ce, (x, np.array([True, False, True])), {}, TypeError, ["integer"]),
        (ce, (x, np.array([0, 1])), {}, ValueError, ["target", "(3,)", "(2,)"]),
        (ce, (x, np.zeros((3, 5))), {}, ValueError, ["logits", "target", "(3, 4)", "(3, 5)"]),
        (ce, (x, labels), {"label_smoothing": 1.5}, ValueError, ["label_smoothing"]),
        (ce, (x, labels), {"label_smoothing": -0.1}, ValueError, ["label_smoothing"]),
        (ce, (x, labels), {"class_weight": [1.0, 2.0]}, ValueError, ["class_weight", "(4,)"]),
        (ce, (np.zeros((3, 1)), labels * 0), {"class_weight": 2.0}, ValueError,
         ["class_weight", "(1,)"]),
        (ce, (x, [[0, 1], [2]]), {}, ValueError, ["target"]),
        (ce, (x, probabilities), {"ignore_index": 0}, ValueError, ["ignore_index"]),
        (ce, (x, labels), {"ignore_index": 1.5}, TypeError, ["ignore_index"]),
        (ce, (x, labels), {"reduction": "avg"}, ValueError, ["reduction"]),
        (ce, (x, labels), {"sample_weight": [1.0]}, ValueError, ["sample_weight"]),
        (ce, (x, labels), {"out": np.zeros((3, 4), np.float32)}, ValueError, ["out"]),
        (ce, (x, labels), {"out": np.zeros((4, 3))}, ValueError, ["out"]),
        (ce, (x, labels), {"out": np.zeros((3, 8))[:, ::2]}, ValueError, ["out"]),
        (ce, (x, labels), {"n_threads": 0}, ValueError, ["n_threads"]),
        (ce, (np.zeros(4), labels), {}, ValueError, ["logits", "2-D"]),
        (ce, (np.array([["a", "b"]]), [0]), {}, TypeError, ["logits"]),
        (ce, (x.astype(complex), labels), {}, TypeError, ["logits"]),
        ("softmax_binary_cross_entropy", (x, np.array([0, 1, 9])), {}, ValueError,
         ["target[2] = 9"]),
        ("kl_divergence", (x, labels), {}, ValueError, ["logits", "target"]),
        ("multiclass_hinge", (x, np.array([0, 1, 2.5])), {}, TypeError, ["integer"]),
        ("multiclass_hinge", (x, np.array([5, 1, 2])), {}, ValueError, ["target[0] = 5"]),
        ("multiclass_hinge", (x, probabilities), {}, ValueError, ["target", "labels"]),
        ("multiclass_hinge", (x, labels), {"kind": "ovr"}, ValueError, ["kind"]),
        ("multiclass_hinge", (x, labels), {"margin": -1.0}, ValueError, ["margin"]),
        ("logsumexp", (np.zeros(3),), {}, ValueError, ["x", "2-D"]),
        ("softmax", (x,), {"out": np.zeros((3, 4), np.float32)}, ValueError, ["out"]),
        ("logsumexp", (x,), {"out": np.zeros(4)}, ValueError, ["out"]),
    ]


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("name,args,kwargs,error,fragments", bad_input_cases(),
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(bad_input_cases())])
def test_bad_input_raises_and_touches_nothing(module, name, args, kwargs, error, fragments):
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    arrays += [v for v in kwargs.values() if isinstance(v, np.ndarray)]
    before = snapshot(*arrays)
    with pytest.raises(error) as info:
        getattr(module, name)(*args, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert_unchanged(before, arrays)


def test_fast_and_reference_export_the_same_multiclass_names():
    names = ["softmax_cross_entropy", "softmax_binary_cross_entropy", "kl_divergence",
             "multiclass_hinge", "logsumexp", "softmax", "log_softmax"]
    for name in names:
        assert name in fastloss.__all__ and name in reference.__all__
        assert getattr(fastloss, name).__doc__ == getattr(reference, name).__doc__


# --- random rows with special values --------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


def logit_rows(dtype):
    special = st.sampled_from([np.inf, -np.inf, np.nan, 3e38, -3e38, 0.0, 1e4, -1e4])
    width = 32 if dtype == np.float32 else 64
    element = st.one_of(st.floats(-1e3, 1e3, width=width), special)
    shape = st.tuples(st.integers(1, 6), st.integers(1, 6))
    return hnp.arrays(dtype, shape, elements=element)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,target_kind,kwargs", CASES, ids=CASE_IDS)
def test_random_special_rows_match_reference(name, target_kind, kwargs, dtype):
    @settings(max_examples=25, deadline=None)
    @given(logits=logit_rows(dtype), seed=st.integers(0, 2**16))
    def check(logits, seed):
        rng = np.random.default_rng(seed)
        n_rows, n_classes = logits.shape
        target = make_target(rng, target_kind, dtype, n_rows, n_classes)
        options = dict(kwargs)
        if "class_weight" in options:
            options["class_weight"] = class_weight(n_classes)
        with np.errstate(all="ignore"):
            fast = getattr(fastloss, name)(logits, target, reduction="none", **options)
            slow = getattr(reference, name)(logits, target, reduction="none", **options)
        np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-5, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(fast.grad, slow.grad, rtol=1e-5, atol=1e-6, equal_nan=True)

    check()


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_memory_mapped_read_only_inputs(module, tmp_path):
    rng = np.random.default_rng(11)
    logits = make_logits(rng, 100, 6, np.float32)
    labels = make_labels(rng, 100, 6)
    expected = reference.softmax_cross_entropy(logits, labels)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    mapped_logits = np.load(tmp_path / "logits.npy", mmap_mode="r")
    mapped_labels = np.load(tmp_path / "labels.npy", mmap_mode="r")
    loss, grad = module.softmax_cross_entropy(mapped_logits, mapped_labels)
    assert_close(loss, expected.loss, np.float32)
    assert_close(grad, expected.grad, np.float32)
    assert_close(module.logsumexp(mapped_logits), reference.logsumexp(logits), np.float32)


@pytest.mark.parametrize("name,target_kind,kwargs", CASES[:5], ids=CASE_IDS[:5])
def test_rows_longer_than_a_chunk(name, target_kind, kwargs):
    """C = 70_000: one row per chunk, rows split across threads."""
    rng = np.random.default_rng(12)
    n_classes = 70_000
    logits = make_logits(rng, 6, n_classes, np.float32, scale=10.0)
    target = make_target(rng, target_kind, np.float32, 6, n_classes)
    if "class_weight" in kwargs:
        kwargs = dict(kwargs, class_weight=class_weight(n_classes))
    expected = getattr(reference, name)(logits, target, **kwargs)
    for n_threads in (1, 2):
        loss, grad = getattr(fastloss, name)(logits, target, n_threads=n_threads, **kwargs)
        assert_close(loss, expected.loss, np.float32)
        assert_close(grad, expected.grad, np.float32)


# --- the fast exp pass of ordinary float32 rows, at its boundaries -------------
#
# A float32 row with labels takes the fast exp pass when it is "ordinary" (no
# NaN, |max| < 2^20, every logit within 85 of the max), decided once per row;
# these rows sit on both sides of each condition, at lengths that exercise the
# vector part alone (32), the tail alone (17) and both (41, 1_000).

def boundary_rows(n_classes, rng):
    base = rng.normal(0.0, 3.0, n_classes)
    rows = {"normal": base,
            "offset_1e4": base + 1e4,
            "offset_-3e5": base - 3e5}
    spread = base.copy()
    spread[:] = 10.0
    spread[n_classes // 3] = 10.0 - 85.0              # exactly at the limit: fast
    rows["spread_85"] = spread
    spread = spread.copy()
    spread[-1] = 10.0 - 85.5                          # beyond it: careful
    rows["spread_85.5"] = spread
    rows["max_below_2^20"] = base + (2.0 ** 20 - 16)
    rows["max_above_2^20"] = base + (2.0 ** 20 + 64)
    ties = base.copy()
    ties[[1, n_classes // 2, n_classes - 1]] = ties.max() + 1.0
    rows["ties"] = ties
    tiny = np.full(n_classes, -80.0)
    tiny[n_classes // 2] = 4.0                        # p of the max ~ 1 - C e^-84
    rows["dominant"] = tiny
    for where, position in [("first", 0), ("vector", min(9, n_classes - 1)),
                            ("tail", n_classes - 1)]:
        nan = base.copy()
        nan[position] = np.nan
        rows[f"nan_{where}"] = nan
    minus_inf = base.copy()
    minus_inf[n_classes // 2] = -np.inf
    rows["minus_inf"] = minus_inf
    return rows


@pytest.mark.parametrize("n_classes", [17, 32, 41, 1_000])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"class_weight": True},
                                     {"sample_weight": True}, {"hess": True}],
                         ids=["plain", "smoothing", "class_weight", "sample_weight", "hess"])
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "out=logits"])
def test_fast_rows_match_reference_at_their_boundaries(n_classes, options, in_place):
    rng = np.random.default_rng(n_classes)
    rows = boundary_rows(n_classes, rng)
    logits = np.array(list(rows.values()), dtype=np.float32)
    n_rows = len(logits)
    ties_row = list(rows).index("ties")
    labels = rng.integers(0, n_classes, n_rows)
    labels[ties_row] = n_classes // 2                 # a tie of the max, not the first
    labels[list(rows).index("dominant")] = n_classes // 2   # the label at the max
    kwargs = {}
    if options.get("label_smoothing"):
        kwargs["label_smoothing"] = options["label_smoothing"]
    if options.get("class_weight"):
        kwargs["class_weight"] = rng.uniform(0.5, 2.0, n_classes)
    if options.get("sample_weight"):
        kwargs["sample_weight"] = rng.uniform(0.5, 2.0, n_rows)
    hess = bool(options.get("hess"))
    expected = reference.softmax_cross_entropy(logits, labels, reduction="none", hess=hess,
                                               **kwargs)
    x = logits.copy()
    result = fastloss.softmax_cross_entropy(x, labels, reduction="none", hess=hess,
                                            out=x if in_place else None, **kwargs)
    if in_place:
        assert np.shares_memory(result.grad, x)
    assert_close(result.loss, expected.loss, np.float32, scale=10.0)
    assert_close(result.grad, expected.grad, np.float32)
    if hess:
        assert_close(result.hess, expected.hess, np.float32)
    # the NaN rows are NaN throughout; the others are as finite as the reference's
    nan_rows = [i for i, name in enumerate(rows) if name.startswith("nan")]
    assert np.isnan(result.loss[nan_rows]).all() and np.isnan(result.grad[nan_rows]).all()
    np.testing.assert_array_equal(np.isfinite(result.loss), np.isfinite(expected.loss))
    np.testing.assert_array_equal(np.isfinite(result.grad), np.isfinite(expected.grad))


def test_fast_rows_keep_the_digits_of_a_dominant_class():
    """p_y - 1 = -S / T at the maximum: tiny, and accurate, where 1 - p_y would cancel."""
    logits = np.full((2, 100), -60.0, np.float32)
    logits[:, 7] = 20.0
    labels = np.array([7, 3])
    result = fastloss.softmax_cross_entropy(logits, labels, reduction="none")
    # S = 99 e^-80 exactly enough in float64: the label at the max
    others = 99.0 * np.exp(-80.0)
    np.testing.assert_allclose(result.loss[0], np.log1p(others), rtol=4 * 2.0 ** -24)
    np.testing.assert_allclose(result.grad[0, 7], -others / (1.0 + others), rtol=8 * 2.0 ** -24)
    np.testing.assert_allclose(result.grad[0, 3], np.exp(-80.0) / (1.0 + others),
                               rtol=8 * 2.0 ** -24)
    # the label elsewhere: loss 80 + log1p(S), gradient p_3 - 1 and p_7
    np.testing.assert_allclose(result.loss[1], 80.0 + np.log1p(others), rtol=4 * 2.0 ** -24)
    np.testing.assert_allclose(result.grad[1, 7], 1.0 / (1.0 + others), rtol=8 * 2.0 ** -24)
