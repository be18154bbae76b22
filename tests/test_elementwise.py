"""The elementwise losses: fast kernels against the NumPy reference, gradients
against finite differences, closed forms, special cases, extreme logits and
every row of the bad-input table that applies to them."""
import itertools
import math
import zlib

import numpy as np
import pytest

import fastloss
import fastloss.reference
from cases import ELEMENTWISE, variant_ids, variants
from helpers import (ATOL, RTOL, assert_close, assert_unchanged, finite_difference_gradient,
                     snapshot)

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
BOTH = [fastloss, fastloss.reference]
BOTH_IDS = ["fast", "reference"]

# Small shapes run one chunk; the large ones (> 100_000 elements) run several
# chunks, so the multi-chunk and multi-thread paths of the kernels really run.
SHAPES = {
    "1d": (997,),
    "2d": (131, 7),
    "1d-large": (110_001,),
    "2d-large": (22_003, 5),
}


def _shape_kinds(case):
    return [kind for kind in SHAPES if len(SHAPES[kind]) in case.ndims]


# Options that change the kernel's path (per-column parameters) also run large.
_LARGE_OPTIONS = ("default", "pos_weight=(K,)")
GRID_CASES = [(case, option, kind) for case, option in variants(ELEMENTWISE)
              for kind in _shape_kinds(case)
              if "large" not in kind or option in _LARGE_OPTIONS]
GRID_IDS = [f"{case.name}[{option}]-{kind}" for case, option, kind in GRID_CASES]


def _with_layout(array, layout):
    """The same values as ``array``, stored as asked."""
    if array is None or layout == "contiguous":
        return array
    if layout == "readonly":
        copy = array.copy()
        copy.flags.writeable = False
        return copy
    if layout == "strided":     # every other element of a wider buffer
        wide_shape = array.shape[:-1] + (2 * array.shape[-1],)
        wide = np.full(wide_shape, 7.0, dtype=array.dtype)
        view = wide[..., ::2]
        view[...] = array
        assert not view.flags.c_contiguous
        return view
    raise AssertionError(layout)


def _grad_scale(case, prep_shape, reduction, weight):
    """A bound on the magnitude of the gradient elements, for the absolute tolerance."""
    scale = case.grad_scale * (1.0 if weight is None else float(np.max(np.abs(weight))))
    if reduction == "mean":
        denominator = prep_shape[0] if weight is None else float(np.sum(weight))
        scale /= denominator * (1 if len(prep_shape) == 1 else prep_shape[1])
    return scale


# How the kernel is called: every combination runs for each small grid point.
CALLS = list(itertools.product(["contiguous", "readonly", "strided"],   # input layout
                               [None, "fresh", "pred"],                 # out
                               [1, 2]))                                 # n_threads
# The large inputs exercise the chunked, multi-thread paths; the layouts only
# change the validation's conversions, which the small inputs cover in full.
LARGE_CALLS = [call for call in CALLS if call[0] == "contiguous"] + [
    ("readonly", None, 2), ("strided", "fresh", 2)]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case,option,shape_kind", GRID_CASES, ids=GRID_IDS)
def test_kernel_matches_reference(case, option, shape_kind, dtype, reduction, weighted):
    """The grid: loss and option x shape x dtype x reduction x sample_weight, each
    called with every input layout x out (None, fresh, pred) x n_threads (1, 2)."""
    shape = SHAPES[shape_kind]
    rng = np.random.default_rng(zlib.crc32(f"{case.name}{option}{shape_kind}".encode()))
    pred, target = case.make_inputs(rng, shape, dtype)
    options = case.options[option](shape)
    weight = rng.uniform(0.5, 2.0, size=shape[0]) if weighted else None
    expected = case.reference(pred.copy(), target.copy(), sample_weight=weight,
                              reduction=reduction, **options)
    for layout, out_mode, n_threads in (LARGE_CALLS if "large" in shape_kind else CALLS):
        try:
            _check_one_call(case, options, pred, target, weight, reduction, expected,
                            layout, out_mode, n_threads)
        except AssertionError as error:
            raise AssertionError(f"layout={layout}, out={out_mode}, n_threads={n_threads}: "
                                 f"{error}") from error


def _check_one_call(case, options, pred, target, weight, reduction, expected, layout,
                    out_mode, n_threads):
    shape, dtype = pred.shape, pred.dtype
    pred_in = _with_layout(pred, layout)
    target_in = _with_layout(target, layout)
    weight_in = _with_layout(weight, layout)
    if out_mode == "fresh":
        out = np.full(shape, np.nan, dtype=dtype)
    elif out_mode == "pred":
        out = pred_in if layout != "contiguous" else pred_in.copy()
    else:
        out = None
    if out_mode == "pred" and layout == "contiguous":
        pred_in = out               # a private copy that the gradient may overwrite
    before = snapshot(pred_in, target_in, weight_in)

    if out_mode == "pred" and layout != "contiguous":
        # A read-only or strided pred cannot receive the gradient in place.
        with pytest.raises(ValueError, match="out"):
            case.fast(pred_in, target_in, sample_weight=weight_in, reduction=reduction,
                      out=out, n_threads=n_threads, **options)
        assert_unchanged(before, [pred_in, target_in, weight_in])
        return

    result = case.fast(pred_in, target_in, sample_weight=weight_in, reduction=reduction,
                       out=out, n_threads=n_threads, **options)

    assert isinstance(result, fastloss.LossGrad)
    if reduction == "none":
        assert isinstance(result.loss, np.ndarray)
        assert result.loss.dtype == dtype and result.loss.shape == shape
        loss_scale = 1.0 if weight is None else float(np.max(weight))
        assert_close(result.loss, expected.loss, dtype, scale=10 * loss_scale)
    else:
        assert type(result.loss) is float
        assert_close(result.loss, expected.loss, dtype)
    assert result.grad.dtype == dtype and result.grad.shape == shape
    assert_close(result.grad, expected.grad, dtype,
                 scale=_grad_scale(case, shape, reduction, weight))

    if out is not None:
        assert result.grad is out
        assert np.shares_memory(result.grad, out)
    if out_mode == "pred":
        # The gradient overwrote the predictions; nothing else changed.
        np.testing.assert_array_equal(pred_in, result.grad)
        assert_unchanged(before[1:], [target_in, weight_in])
    else:
        assert_unchanged(before, [pred_in, target_in, weight_in])


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case,option", variants(ELEMENTWISE), ids=variant_ids(ELEMENTWISE))
def test_grad_false_returns_none_and_the_same_loss(case, option, reduction, module):
    rng = np.random.default_rng(1)
    shape = (40, 3) if 2 in case.ndims else (40,)
    pred, target = case.make_inputs(rng, shape, np.float64)
    options = case.options[option](shape)
    function = getattr(module, case.name)
    out = np.full(shape, 5.0)
    full = function(pred, target, reduction=reduction, **options)
    loss_only = function(pred, target, reduction=reduction, grad=False, **options)
    assert loss_only.grad is None
    np.testing.assert_array_equal(loss_only.loss, full.loss)
    # out receives the gradient: with grad=False it is a mistake, not ignored
    with pytest.raises(ValueError, match="grad=False"):
        function(pred, target, reduction=reduction, grad=False, out=out, **options)
    np.testing.assert_array_equal(out, 5.0)


# --- dtype conversion ---------------------------------------------------------

@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("pred_dtype,target_dtype,computed", [
    (np.float32, np.float64, np.float32),      # targets follow pred
    (np.float32, np.int64, np.float32),
    (np.float64, np.float32, np.float64),
    (np.float16, np.float16, np.float64),      # every other real dtype -> float64
    (np.int32, np.int32, np.float64),
    (np.bool_, np.float32, np.float64),
])
def test_computation_dtype(module, pred_dtype, target_dtype, computed):
    pred = np.array([0, 1, 1, 0, 1], dtype=pred_dtype)
    target = np.array([1, 1, 0, 0, 1], dtype=target_dtype)
    result = module.mse(pred, target, reduction="none")
    assert result.loss.dtype == computed and result.grad.dtype == computed
    r = pred.astype(np.float64) - target.astype(np.float64)
    np.testing.assert_array_equal(result.loss, r * r)
    np.testing.assert_array_equal(result.grad, 2 * r)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_python_lists_and_hinge_01_labels(module):
    loss, grad = module.mse([1.0, 2.0], [1.0, 0.0])
    assert loss == 2.0
    np.testing.assert_array_equal(grad, [0.0, 2.0])     # 2 r / N
    pm = module.hinge([0.5, -0.25, 2.0], [1, -1, -1], reduction="none")
    zero_one = module.hinge([0.5, -0.25, 2.0], [1, 0, 0], reduction="none")
    np.testing.assert_array_equal(pm.loss, [0.5, 0.75, 3.0])
    np.testing.assert_array_equal(zero_one.loss, pm.loss)
    np.testing.assert_array_equal(zero_one.grad, pm.grad)


# --- gradients against finite differences ---------------------------------------

def _away_from_kinks(case, pred, target, options):
    """Move points off the non-differentiable set (hinge kink, huber switch) by > 0.05."""
    if case.name in ("hinge", "squared_hinge"):
        margin = options.get("margin", 1.0)
        z = margin - target * pred
        near = np.abs(z) < 0.05
        pred[near] -= target[near] * 0.2
    if case.name == "huber":
        delta = options.get("delta", 1.0)
        r = pred - target
        near = np.abs(np.abs(r) - delta) < 0.05
        pred[near] += 0.2 * np.sign(r[near])
    return pred


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case,option", variants(ELEMENTWISE), ids=variant_ids(ELEMENTWISE))
def test_gradient_matches_finite_difference(case, option, reduction, weighted, module):
    rng = np.random.default_rng(2)
    shape = (6, 3) if 2 in case.ndims else (12,)
    pred, target = case.make_inputs(rng, shape, np.float64)
    options = case.options[option](shape)
    pred = _away_from_kinks(case, pred, target, options)
    weight = rng.uniform(0.5, 2.0, size=shape[0]) if weighted else None
    function = getattr(module, case.name)

    def total_loss(x):
        # For "none", row i of the gradient is d loss_i / d pred_i: the
        # gradient of the sum of the per-sample losses.
        return float(np.sum(function(x, target, sample_weight=weight, reduction=reduction,
                                     grad=False, **options).loss))

    analytic = function(pred, target, sample_weight=weight, reduction=reduction, **options).grad
    numeric = finite_difference_gradient(total_loss, pred)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-8)


# --- closed forms, derived by hand --------------------------------------------------

LOG2 = math.log(2.0)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,pred,target,options,loss,grad", [
    # r = 3: r^2 = 9, d/dp = 2r = 6; r = -0.5: 0.25 and -1
    ("mse", [3.0, 1.0], [0.0, 1.5], {}, [9.0, 0.25], [6.0, -1.0]),
    # quadratic zone 0.5 r^2 (r = 0.5, r = -1 at the boundary), linear zone
    # delta (|r| - delta / 2): r = 3, delta = 1 -> 2.5, grad = sign(r) delta
    ("huber", [0.5, -1.0, 3.0, -3.0], [0.0] * 4, {}, [0.125, 0.5, 2.5, 2.5],
     [0.5, -1.0, 1.0, -1.0]),
    ("huber", [3.0, 0.25], [0.0, 0.0], {"delta": 2.0}, [4.0, 0.03125], [2.0, 0.25]),
    # sigma(0) = 1/2: loss = log 2 for every t in [0, 1], grad = 1/2 - t
    ("binary_cross_entropy", [0.0, 0.0, 0.0], [0.0, 1.0, 0.25], {}, [LOG2] * 3,
     [0.5, -0.5, 0.25]),
    # x = log 3: sigma = 3/4; t = 1: -log(3/4); t = 0: -log(1/4) = log 4
    ("binary_cross_entropy", [math.log(3.0)] * 2, [1.0, 0.0], {},
     [math.log(4.0 / 3.0), math.log(4.0)], [-0.25, 0.75]),
    # pos_weight 3 at x = 0, t = 1: 3 log 2, grad -3 * sigma(0) = -1.5
    ("binary_cross_entropy", [0.0], [1.0], {"pos_weight": 3.0}, [3 * LOG2], [-1.5]),
    # max(0, 1 - t s): s = 0.5, t = 1 -> 0.5, grad -1; s = 2 -> 0; t = -1, s = 0.5
    # -> 1.5, grad +1; at the kink t s = margin the subgradient is 0
    ("hinge", [0.5, 2.0, 0.5, 1.0], [1.0, 1.0, -1.0, 1.0], {}, [0.5, 0.0, 1.5, 0.0],
     [-1.0, 0.0, 1.0, 0.0]),
    ("hinge", [0.5, -0.5], [1.0, 1.0], {"margin": 0.0}, [0.0, 0.5], [0.0, -1.0]),
    # max(0, 1 - t s)^2, grad -2 t max(0, 1 - t s)
    ("squared_hinge", [0.5, 2.0, 0.5], [1.0, 1.0, -1.0], {}, [0.25, 0.0, 2.25],
     [-1.0, 0.0, 3.0]),
])
def test_closed_form_values(module, dtype, name, pred, target, options, loss, grad):
    function = getattr(module, name)
    pred = np.array(pred, dtype=dtype)
    target = np.array(target, dtype=dtype)
    eps = float(np.finfo(dtype).eps)    # a Python float: pytest.approx rejects NumPy scalars
    result = function(pred, target, reduction="none", **options)
    np.testing.assert_allclose(result.loss, loss, rtol=4 * eps, atol=4 * eps)
    np.testing.assert_allclose(result.grad, grad, rtol=4 * eps, atol=4 * eps)
    total = function(pred, target, reduction="sum", **options)
    assert total.loss == pytest.approx(sum(loss), rel=8 * eps)
    mean = function(pred, target, reduction="mean", **options)
    assert mean.loss == pytest.approx(sum(loss) / len(loss), rel=8 * eps)
    np.testing.assert_allclose(mean.grad, np.array(grad) / len(loss), rtol=4 * eps,
                               atol=4 * eps)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_weighted_mean_by_hand(module):
    # (N, K) = (2, 2); per-element r^2 = [[1, 4], [9, 16]], weights [1, 3]:
    # sum = 1 * 5 + 3 * 25 = 80; mean = 80 / (K * (1 + 3)) = 10.
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    weight = np.array([1.0, 3.0])
    result = module.mse(pred, np.zeros((2, 2)), sample_weight=weight)
    assert result.loss == 10.0
    np.testing.assert_array_equal(result.grad, [[2 / 8, 4 / 8], [18 / 8, 24 / 8]])
    summed = module.mse(pred, np.zeros((2, 2)), sample_weight=weight, reduction="sum")
    assert summed.loss == 80.0
    none = module.mse(pred, np.zeros((2, 2)), sample_weight=weight, reduction="none")
    np.testing.assert_array_equal(none.loss, [[1.0, 4.0], [27.0, 48.0]])
    np.testing.assert_array_equal(none.grad, [[2.0, 4.0], [18.0, 24.0]])


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_pos_weight_per_column_by_hand(module):
    # x = 0 everywhere, t = 1: loss pw_k log 2, grad -pw_k / 2
    logits = np.zeros((3, 2))
    result = module.binary_cross_entropy(logits, np.ones((3, 2)), pos_weight=[2.0, 0.5],
                                         reduction="none")
    np.testing.assert_allclose(result.loss, [[2 * LOG2, 0.5 * LOG2]] * 3, rtol=1e-15)
    np.testing.assert_allclose(result.grad, [[-1.0, -0.25]] * 3, rtol=1e-15)


# --- the contract's special cases -----------------------------------------------------

EMPTY = [(case, shape) for case in ELEMENTWISE for shape in [(0,), (0, 3), (4, 0)]
         if len(shape) in case.ndims]


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case,shape", EMPTY, ids=[f"{c.name}-{s}" for c, s in EMPTY])
def test_empty_input(case, shape, reduction, module):
    function = getattr(module, case.name)
    out = np.full(shape, np.nan)
    result = function(np.zeros(shape), np.ones(shape), reduction=reduction, out=out)
    if reduction == "none":
        assert result.loss.shape == shape
    else:
        assert result.loss == 0.0 and type(result.loss) is float
    assert result.grad is out and result.grad.shape == shape


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", ELEMENTWISE, ids=repr)
def test_zero_total_weight_mean_is_zero(case, dtype, module):
    rng = np.random.default_rng(3)
    shape = (5, 2) if 2 in case.ndims else (5,)
    pred, target = case.make_inputs(rng, shape, dtype)
    function = getattr(module, case.name)
    out = np.full(shape, np.nan, dtype=dtype)
    for weight in (np.zeros(5), np.array([1.0, -1.0, 0.0, 2.0, -2.0])):
        result = function(pred, target, sample_weight=weight, out=out)
        assert result.loss == 0.0 and type(result.loss) is float
        assert result.grad is out
        np.testing.assert_array_equal(result.grad, 0.0)
    # N == 0 with a weight vector of length 0.
    empty = function(np.zeros((0,) + shape[1:], dtype), np.zeros((0,) + shape[1:], dtype),
                     sample_weight=np.zeros(0))
    assert empty.loss == 0.0 and empty.grad.shape == (0,) + shape[1:]


# A NaN target of a loss that checks its targets (hinge labels, probabilities,
# counts) is a bad input, as is a NaN sample weight (tests/test_bad_values.py).
NAN_CASES = [(case, where) for case in ELEMENTWISE for where in ("pred", "target")
             if not (case.spec.target.scan and where == "target")]


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case,where", NAN_CASES, ids=[f"{c.name}-{w}" for c, w in NAN_CASES])
def test_nan_stays_in_its_row(case, where, dtype, module):
    rng = np.random.default_rng(4)
    shape = (50_000, 3) if 2 in case.ndims else (150_000,)   # several chunks
    pred, target = case.make_inputs(rng, shape, dtype)
    weight = np.ones(shape[0])
    bad_row = shape[0] // 2 + 1
    one_element = len(shape) == 2 and where != "weight"
    {"pred": pred, "target": target, "weight": weight}[where][
        (bad_row, 0) if one_element else bad_row] = np.nan
    function = getattr(module, case.name)
    with np.errstate(invalid="ignore"):
        none = function(pred, target, sample_weight=weight, reduction="none", n_threads=2)
        total = function(pred, target, sample_weight=weight, reduction="sum", n_threads=2)
    nan_loss = np.isnan(none.loss)
    nan_grad = np.isnan(none.grad)
    if one_element:
        assert nan_loss[bad_row].tolist() == [True, False, False]
        assert nan_grad[bad_row].tolist() == [True, False, False]
    else:
        assert nan_loss[bad_row].all() and nan_grad[bad_row].all()
    nan_loss[bad_row] = False
    nan_grad[bad_row] = False
    assert not nan_loss.any() and not nan_grad.any()
    assert math.isnan(total.loss)


# --- extreme logits for the binary cross-entropy ---------------------------------------

def _bce_exact(x, t, pos_weight=1.0):
    """Loss and gradient of one element, in 60-digit arithmetic (mpmath).

    loss = pw t log(1 + e^-x) + (1 - t) log(1 + e^x);
    grad = (1 - t) sigma(x) - pw t sigma(-x).  Infinite logits give the limits.
    """
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        x, t, pw = mpmath.mpf(float(x)), mpmath.mpf(float(t)), mpmath.mpf(pos_weight)
        if mpmath.isinf(x):
            positive = x > 0
            softplus_pos = mpmath.inf if positive else mpmath.mpf(0)     # log(1 + e^x)
            softplus_neg = mpmath.mpf(0) if positive else mpmath.inf
            sigma_pos = mpmath.mpf(1) if positive else mpmath.mpf(0)
        else:
            softplus_pos = mpmath.log1p(mpmath.exp(x))
            softplus_neg = mpmath.log1p(mpmath.exp(-x))
            sigma_pos = 1 / (1 + mpmath.exp(-x))
        loss = (pw * t * softplus_neg if pw * t != 0 else 0) + \
               ((1 - t) * softplus_pos if 1 - t != 0 else 0)
        grad = (1 - t) * sigma_pos - pw * t * (1 - sigma_pos)
        return float(loss), float(grad)


EXTREME_LOGITS = [-np.inf, -3e38, -1e4, -745.0, -709.0, -104.0, -88.7, -40.0, -1e-30, 0.0,
                  1e-30, 40.0, 88.7, 104.0, 709.0, 745.0, 1e4, 3e38, np.inf]


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("pos_weight", [None, 2.0])
def test_bce_extreme_logits(module, dtype, pos_weight):
    logits = np.array(EXTREME_LOGITS, dtype=dtype)
    for t in (0.0, 1.0, 0.3):
        target = np.full(logits.shape, t, dtype=dtype)
        result = module.binary_cross_entropy(logits, target, pos_weight=pos_weight,
                                             reduction="none")
        finite = np.isfinite(logits)
        expected = [_bce_exact(x, target[0], 1.0 if pos_weight is None else pos_weight)
                    for x in logits]
        expected_loss = np.array([e[0] for e in expected])
        expected_grad = np.array([e[1] for e in expected])
        representable = np.abs(expected_loss) <= np.finfo(dtype).max
        # Finite loss and gradient for every finite logit (whose exact loss fits the dtype).
        assert np.isfinite(result.loss[finite & representable]).all()
        assert np.isfinite(result.grad[finite]).all()
        eps = float(np.finfo(dtype).eps)
        tiny = float(np.finfo(dtype).tiny)
        np.testing.assert_allclose(result.loss[representable], expected_loss[representable],
                                   rtol=8 * eps, atol=tiny)
        assert (np.isinf(result.loss[~representable])).all()
        # The gradient is a difference of two terms of size <= max(1, pw).
        np.testing.assert_allclose(result.grad, expected_grad, rtol=0,
                                   atol=4 * eps * (pos_weight or 1.0))


# --- bad input: a clear error, nothing lost ---------------------------------------------

def _bad_calls():
    """(id, function name, args, kwargs, exception, words the message must contain)."""
    x3 = np.array([0.5, -1.0, 2.0])
    t3 = np.array([1.0, -1.0, 1.0])
    x23 = np.arange(6.0).reshape(2, 3)
    calls = []
    for name in ("mse", "huber", "binary_cross_entropy", "hinge", "squared_hinge"):
        p = {"mse": "pred", "huber": "pred", "binary_cross_entropy": "logits"}.get(name, "scores")
        calls += [
            (f"{name}-shape", name, (x3, np.ones(4)), {}, ValueError, [p, "target", "(3,)", "(4,)"]),
            (f"{name}-weight-shape", name, (x3, t3), {"sample_weight": np.ones(2)}, ValueError,
             ["sample_weight", "(2,)"]),
            (f"{name}-weight-2d", name, (x3, t3), {"sample_weight": np.ones((3, 1))},
             ValueError, ["sample_weight"]),
            (f"{name}-reduction", name, (x3, t3), {"reduction": "avg"}, ValueError,
             ["reduction", "avg"]),
            (f"{name}-reduction-none-object", name, (x3, t3), {"reduction": None}, ValueError,
             ["reduction"]),
            (f"{name}-out-shape", name, (x3, t3), {"out": np.zeros(4)}, ValueError, ["out"]),
            (f"{name}-out-dtype", name, (x3, t3), {"out": np.zeros(3, np.float32)}, ValueError,
             ["out", "dtype"]),
            (f"{name}-out-layout", name, (x3, t3), {"out": np.zeros(6)[::2]}, ValueError,
             ["out", "contiguous"]),
            (f"{name}-out-list", name, (x3, t3), {"out": [0.0, 0.0, 0.0]},
             (ValueError, TypeError), ["out"]),
            (f"{name}-pred-string", name, (np.array(["a", "b", "c"]), t3), {}, TypeError, [p]),
            (f"{name}-pred-object", name, (np.array([1.0, None, 2.0], dtype=object), t3), {},
             TypeError, [p]),
            (f"{name}-pred-complex", name, (x3 + 1j, t3), {}, TypeError, [p]),
            (f"{name}-target-string", name, (x3, ["1", "0", "1"]), {}, TypeError, ["target"]),
            (f"{name}-weight-complex", name, (x3, t3), {"sample_weight": np.ones(3) * 1j},
             TypeError, ["sample_weight"]),
            (f"{name}-pred-ragged", name, ([[1.0, 2.0], [3.0]], t3), {}, ValueError, [p]),
            (f"{name}-pred-3d", name, (np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), {},
             ValueError, [p]),
            (f"{name}-pred-0d", name, (1.0, 1.0), {}, ValueError, [p]),
            (f"{name}-threads-0", name, (x3, t3), {"n_threads": 0}, ValueError, ["n_threads"]),
            (f"{name}-threads-float", name, (x3, t3), {"n_threads": 1.5}, TypeError,
             ["n_threads"]),
            (f"{name}-threads-string", name, (x3, t3), {"n_threads": "2"}, TypeError,
             ["n_threads"]),
        ]
    calls += [
        ("huber-delta-negative", "huber", (x3, t3), {"delta": -1.0}, ValueError, ["delta"]),
        ("huber-delta-zero", "huber", (x3, t3), {"delta": 0.0}, ValueError, ["delta"]),
        ("huber-delta-nan", "huber", (x3, t3), {"delta": float("nan")}, ValueError, ["delta"]),
        ("huber-delta-string", "huber", (x3, t3), {"delta": "1"}, TypeError, ["delta"]),
        ("bce-pos-weight-shape", "binary_cross_entropy", (x23, x23 / 6), {"pos_weight": [1.0, 2.0]},
         ValueError, ["pos_weight", "(2,)"]),
        ("bce-pos-weight-string", "binary_cross_entropy", (x3, t3 / 2 + 0.5),
         {"pos_weight": "2"}, TypeError, ["pos_weight"]),
        ("hinge-2d", "hinge", (x23, np.ones((2, 3))), {}, ValueError, ["scores", "1-D"]),
        ("squared-hinge-2d", "squared_hinge", (x23, np.ones((2, 3))), {}, ValueError,
         ["scores"]),
    ]
    for name in ("hinge", "squared_hinge"):
        calls += [
            (f"{name}-margin-negative", name, (x3, t3), {"margin": -0.5}, ValueError,
             ["margin"]),
            (f"{name}-margin-inf", name, (x3, t3), {"margin": float("inf")}, ValueError,
             ["margin"]),
            (f"{name}-target-2", name, (x3, np.array([1.0, 2.0, -1.0])), {}, ValueError,
             ["target", "2"]),
            (f"{name}-target-soft", name, (x3, np.array([1.0, 0.5, 0.0])), {}, ValueError,
             ["target", "0.5"]),
            (f"{name}-target-nan", name, (x3, np.array([1.0, -1.0, np.nan])), {}, ValueError,
             ["target", "nan"]),
            (f"{name}-target-mixed", name, (x3, np.array([1.0, -1.0, 0.0])), {}, ValueError,
             ["target", "ambiguous"]),
        ]
    return calls


BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("call_id,name,args,kwargs,exception,words", BAD_CALLS,
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_and_modifies_nothing(module, call_id, name, args, kwargs, exception,
                                              words):
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    before = snapshot(*arrays)
    function = getattr(module, name)
    with pytest.raises(exception) as info:
        function(*args, **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert_unchanged(before, arrays)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("case", ELEMENTWISE, ids=repr)
def test_more_threads_than_work_is_not_an_error(case, module):
    # Even beyond a C int: the kernels never use more threads than chunks.
    pred, target = case.make_inputs(np.random.default_rng(8), (5,), np.float64)
    expected = _bits_of(case.reference(pred, target) if module is fastloss.reference
                        else case.fast(pred, target, n_threads=1))
    for n_threads in (64, 2**31, 2**40):
        assert _bits_of(getattr(module, case.name)(pred, target, n_threads=n_threads)) == expected


def _bits_of(result):
    return np.float64(result.loss).tobytes(), result.grad.tobytes()


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_out_must_not_alias_other_inputs(module):
    buffer = np.arange(8.0)
    pred, target = buffer[:4].copy(), buffer[4:]
    before = snapshot(pred, buffer)
    with pytest.raises(ValueError, match="out"):
        module.mse(pred, target, out=buffer[4:])          # out is target
    with pytest.raises(ValueError, match="out"):
        module.mse(buffer[:4], target, out=buffer[1:5])   # out overlaps pred, is not pred
    assert_unchanged(before, [pred, buffer])
    weight = np.ones(4)
    with pytest.raises(ValueError, match="sample_weight"):
        module.mse(pred, np.zeros(4), sample_weight=weight, out=weight)
    readonly = np.zeros(4)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        module.mse(pred, np.zeros(4), out=readonly)
