"""hess=True: the diagonal of the Hessian of the returned loss.

The fast kernels against the NumPy reference, the reference against a
central finite difference of its own gradient, the softmax cross-entropy
against the closed form A p (1 - p) computed here from a plain softmax,
extreme and NaN inputs, the errors, out=, threads and the empty mean.
"""
import inspect
import zlib

import numpy as np
import pytest

import fastloss
import fastloss.reference
from fastloss._registry import REGISTRY
from cases import (ALL_CASES, CASES, bce_inputs, pred_grad, count_inputs, label_inputs, probability_inputs,
                   rate_inputs, regression_inputs,
                   shape_for)
from helpers import assert_unchanged, snapshot

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
REDUCTIONS = ["mean", "sum", "none"]
BOTH = [fastloss, fastloss.reference]
BOTH_IDS = ["fast", "reference"]
# The registered functions that declare hess=True support, and the others.
WITH_HESS = [name for name, spec in REGISTRY.items() if spec.hess]
WITHOUT_HESS = [name for name, spec in REGISTRY.items()
                if not spec.takes_hess and spec.family != "linear"]
# The piecewise-linear losses that take hess and refuse True (a ValueError).
REFUSING_HESS = [name for name, spec in REGISTRY.items() if spec.takes_hess and not spec.hess]


def _column_weights(shape):
    return np.linspace(0.25, 3.0, 1 if len(shape) == 1 else shape[1])


def _class_weights(shape):
    return np.linspace(0.5, 2.0, shape[1])


# (id, function name, make_inputs, shape, options as a function of the shape)
VARIANTS = [
    ("mse-1d", "mse", regression_inputs, (97,), lambda shape: {}),
    ("mse-2d", "mse", regression_inputs, (13, 5), lambda shape: {}),
    ("huber-1d", "huber", regression_inputs, (97,), lambda shape: {}),
    ("huber-2d-delta=0.3", "huber", regression_inputs, (13, 5), lambda shape: {"delta": 0.3}),
    ("huber-2d-delta=4", "huber", regression_inputs, (13, 5), lambda shape: {"delta": 4.0}),
    ("bce-1d", "binary_cross_entropy", bce_inputs, (97,), lambda shape: {}),
    ("bce-2d", "binary_cross_entropy", bce_inputs, (13, 5), lambda shape: {}),
    ("bce-1d-pos_weight=2.5", "binary_cross_entropy", bce_inputs, (97,),
     lambda shape: {"pos_weight": 2.5}),
    ("bce-2d-pos_weight=2.5", "binary_cross_entropy", bce_inputs, (13, 5),
     lambda shape: {"pos_weight": 2.5}),
    ("bce-2d-pos_weight=(K,)", "binary_cross_entropy", bce_inputs, (13, 5),
     lambda shape: {"pos_weight": _column_weights(shape)}),
    ("ce-labels", "softmax_cross_entropy", label_inputs, (17, 5), lambda shape: {}),
    ("ce-labels-C=1", "softmax_cross_entropy", label_inputs, (9, 1), lambda shape: {}),
    ("ce-labels-class_weight", "softmax_cross_entropy", label_inputs, (17, 5),
     lambda shape: {"class_weight": _class_weights(shape)}),
    ("ce-labels-ignore_index", "softmax_cross_entropy", label_inputs, (17, 5),
     lambda shape: {"ignore_index": 1}),
    ("ce-labels-label_smoothing", "softmax_cross_entropy", label_inputs, (17, 5),
     lambda shape: {"label_smoothing": 0.1}),
    ("ce-labels-all", "softmax_cross_entropy", label_inputs, (17, 5),
     lambda shape: {"class_weight": _class_weights(shape)[::-1].copy(), "ignore_index": 0,
                    "label_smoothing": 0.25}),
    ("ce-probabilities", "softmax_cross_entropy", probability_inputs, (17, 5),
     lambda shape: {}),
    ("ce-probabilities-C=1", "softmax_cross_entropy", probability_inputs, (9, 1),
     lambda shape: {}),
    ("ce-probabilities-class_weight-label_smoothing", "softmax_cross_entropy",
     probability_inputs, (17, 5),
     lambda shape: {"class_weight": _class_weights(shape), "label_smoothing": 0.2}),
    ("focal", "softmax_focal_loss", label_inputs, (17, 5), lambda shape: {}),
    ("focal-C=1", "softmax_focal_loss", label_inputs, (9, 1), lambda shape: {}),
    ("focal-gamma=0.5-class_weight", "softmax_focal_loss", label_inputs, (17, 5),
     lambda shape: {"gamma": 0.5, "class_weight": _class_weights(shape)}),
    ("focal-gamma=3.5-all", "softmax_focal_loss", label_inputs, (17, 5),
     lambda shape: {"gamma": 3.5, "class_weight": _class_weights(shape)[::-1].copy(),
                    "ignore_index": 0}),
    ("kl", "kl_divergence", probability_inputs, (17, 5), lambda shape: {}),
    ("kl-C=1", "kl_divergence", probability_inputs, (9, 1), lambda shape: {}),
    ("smooth_l1-1d", "smooth_l1", regression_inputs, (97,), lambda shape: {}),
    ("smooth_l1-2d-beta=0.3", "smooth_l1", regression_inputs, (13, 5),
     lambda shape: {"beta": 0.3}),
    ("log_cosh-1d", "log_cosh", regression_inputs, (97,), lambda shape: {}),
    ("log_cosh-2d", "log_cosh", regression_inputs, (13, 5), lambda shape: {}),
    ("poisson_nll-1d", "poisson_nll", count_inputs, (97,), lambda shape: {}),
    ("poisson_nll-2d-full", "poisson_nll", count_inputs, (13, 5), lambda shape: {"full": True}),
    ("poisson_nll-2d-rates", "poisson_nll", rate_inputs, (13, 5),
     lambda shape: {"log_input": False}),
    ("sigmoid_focal_loss-1d", "sigmoid_focal_loss", bce_inputs, (97,), lambda shape: {}),
    ("sigmoid_focal_loss-2d-gamma=0.5-no alpha", "sigmoid_focal_loss", bce_inputs, (13, 5),
     lambda shape: {"gamma": 0.5, "alpha": -1.0}),
]
VARIANT_IDS = [variant[0] for variant in VARIANTS]


def test_every_loss_with_hess_has_variants_here():
    """The registry's hess=True losses are the ones VARIANTS checks against finite differences
    (gaussian_nll, with two gradients, in tests/test_more_losses.py)."""
    one_gradient = [name for name in WITH_HESS if len(REGISTRY[name].gradients) == 1]
    assert sorted({variant[1] for variant in VARIANTS}) == sorted(one_gradient)


def _inputs(variant, dtype, weighted):
    variant_id, name, make_inputs, shape, options = variant
    rng = np.random.default_rng(zlib.crc32(variant_id.encode()))
    pred, target = make_inputs(rng, shape, dtype)
    weight = rng.uniform(0.5, 2.0, size=shape[0]) if weighted else None
    return name, pred, target, weight, options(shape)


ULPS = {np.dtype(np.float32): 2, np.dtype(np.float64): 8}
# The losses beyond the seed hold the gradient budget (8 float32 ulps) for their
# Hessians too: their float32 kernels evaluate it in float lanes (log_cosh's 1 / cosh^2
# measured at about 4 ulps), where the seed's losses evaluate it in float64.
ULPS_MORE = {np.dtype(np.float32): 8, np.dtype(np.float64): 8}
MORE = ("smooth_l1", "log_cosh", "poisson_nll", "sigmoid_focal_loss")


def _relative_error_bound(expected, dtype, ulps):
    """``ulps`` units of the dtype's rounding, relative to each element's magnitude
    (and to the smallest normal number, for elements that are exactly 0)."""
    info = np.finfo(dtype)
    return ulps * info.eps * np.maximum(np.abs(np.asarray(expected, np.float64)),
                                        float(info.tiny))


# --- fast against reference; loss and grad as without hess ---------------------

def _focal_hessian_terms(logits, target, options):
    """sum of |terms| of the sigmoid focal loss's second derivative (its formula in
    fastloss.sigmoid_focal_loss's declaration), in float64."""
    x, t = np.asarray(logits, np.float64), np.asarray(target, np.float64)
    alpha, gamma = options.get("alpha", 0.25), options.get("gamma", 2.0)
    e = np.exp(-np.abs(x))
    inv = 1 / (1 + e)
    positive = x >= 0
    sigma_pos, sigma_neg = np.where(positive, inv, e * inv), np.where(positive, e * inv, inv)
    ce = t * np.logaddexp(0, -x) + (1 - t) * np.logaddexp(0, x)
    n = np.where(positive, (1 - t) + t * e, t + (1 - t) * e)
    power = (n * inv) ** gamma
    s = np.where(n > 0, e * inv / np.where(n > 0, n, 1), 1)
    a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1.0
    g = gamma * (1 - 2 * t)
    dce = (1 - t) * sigma_pos - t * sigma_neg
    inner = dce + g * ce * s
    ds = s * (sigma_neg - sigma_pos) - (1 - 2 * t) * s * s
    terms = (np.abs(g * s * inner) + e * inv * inv + np.abs(g * s * dce)
             + np.abs(g * ce * ds))
    return np.abs(a_t) * power * terms


def _hess_scale(shape, weight, reduction):
    """The factor a returned Hessian element carries: its row's weight, over the "mean"
    divisor."""
    w = np.ones(shape[0]) if weight is None else np.asarray(weight, np.float64)
    scale = w if len(shape) == 1 else np.repeat(w[:, None], shape[1], axis=1)
    if reduction == "mean":
        scale = scale / (np.sum(w) * (1 if len(shape) == 1 else shape[1]))
    return np.abs(scale) if reduction != "sum" or weight is not None else np.ones(shape)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_fast_hess_matches_reference(variant, dtype, reduction, weighted):
    name, pred, target, weight, options = _inputs(variant, dtype, weighted)
    fast = getattr(fastloss, name)
    ref = getattr(fastloss.reference, name)
    result = fast(pred, target, sample_weight=weight, reduction=reduction, hess=True, **options)
    plain = fast(pred, target, sample_weight=weight, reduction=reduction, **options)
    expected = ref(pred, target, sample_weight=weight, reduction=reduction, hess=True, **options)

    assert type(result) is fastloss.LossGradHess and type(expected) is fastloss.LossGradHess
    assert type(plain) is fastloss.LossGrad
    # The same computation as without hess: loss and grad bit for bit.
    np.testing.assert_array_equal(result.loss, plain.loss)
    np.testing.assert_array_equal(result.grad, plain.grad)
    assert result.hess.shape == result.grad.shape == pred.shape
    assert result.hess.dtype == result.grad.dtype == pred.dtype
    assert expected.hess.shape == pred.shape and expected.hess.dtype == pred.dtype
    # A few roundings of the dtype: both evaluate the same closed form in
    # float64 (the reference's exp(x_c - m) of a float64 row also carries the
    # rounding of x_c - m, which the kernel compensates: up to |x_c - m| / 2 ulps).
    error = np.abs(result.hess.astype(np.float64) - expected.hess.astype(np.float64))
    magnitude = expected.hess
    if name == "softmax_focal_loss":
        # The focal Hessian's diagonal is a difference, w F p (1 - p) - w P F'(P)
        # (p - onehot)^2, which cancels where the two terms are close: each
        # element is measured against the first term's magnitude, |grad_c| (1 - p_c)
        # off the label and |grad_y| p_y at it (grad = w F (p - onehot), scaled).
        p = fastloss.softmax(np.asarray(pred, np.float64))
        onehot = np.zeros(p.shape, bool)
        onehot[np.arange(p.shape[0]), np.clip(target, 0, p.shape[1] - 1)] = True
        first_term = np.abs(plain.grad.astype(np.float64)) * np.where(onehot, p, 1 - p)
        magnitude = np.maximum(np.abs(expected.hess), first_term)
    if name == "sigmoid_focal_loss":
        # A sum of four terms that cancel in places: each element is measured against
        # the sum of their magnitudes (times its weight and the "mean" divisor).
        magnitude = np.maximum(np.abs(expected.hess),
                               _focal_hessian_terms(pred, target, options)
                               * _hess_scale(pred.shape, weight, reduction))
    ulps = (ULPS_MORE if name in MORE else ULPS)[np.dtype(dtype)]
    bound = _relative_error_bound(magnitude, dtype, ulps)
    assert (error <= bound).all(), (np.max(error / bound), result.hess, expected.hess)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_reference_hess_is_the_derivative_of_the_gradient(variant, reduction, weighted):
    """hess_i = d grad_i / d pred_i, by a central finite difference in float64."""
    name, pred, target, weight, options = _inputs(variant, np.float64, weighted)
    ref = getattr(fastloss.reference, name)
    if name == "huber":
        # keep every residual away from the kink at |r| = delta, where grad is not smooth
        distance = np.abs(np.abs(pred - target) - options.get("delta", 1.0))
        assert distance.min() > 1e-3

    def gradient(x):
        return ref(x, target, sample_weight=weight, reduction=reduction, **options).grad

    hess = ref(pred, target, sample_weight=weight, reduction=reduction, hess=True,
               **options).hess
    step = 1e-6
    numeric = np.empty_like(pred)
    flat_pred, flat_numeric = pred.reshape(-1), numeric.reshape(-1)
    for i in range(flat_pred.size):
        original = flat_pred[i]
        flat_pred[i] = original + step
        forward = gradient(pred).reshape(-1)[i]
        flat_pred[i] = original - step
        backward = gradient(pred).reshape(-1)[i]
        flat_pred[i] = original
        flat_numeric[i] = (forward - backward) / (2 * step)
    np.testing.assert_allclose(hess, numeric, rtol=1e-5, atol=1e-8 * np.max(np.abs(hess)))


# --- the softmax cross-entropy's closed form, computed here ---------------------

CROSS_ENTROPY = [variant for variant in VARIANTS if variant[1] == "softmax_cross_entropy"]


def _plain_softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("variant", CROSS_ENTROPY, ids=[v[0] for v in CROSS_ENTROPY])
def test_cross_entropy_hess_is_A_p_1_minus_p(variant, dtype, reduction, module):
    """Row loss -sum_c a_c log p_c, A = sum_c a_c: the diagonal is A p (1 - p)."""
    name, logits, target, weight, options = _inputs(variant, dtype, weighted=True)
    n_rows, n_classes = logits.shape
    w = options.get("class_weight", np.ones(n_classes))
    eps = options.get("label_smoothing", 0.0)
    if target.ndim == 1:
        kept = target != options.get("ignore_index", -1)
        a_sum = np.where(kept, (1 - eps) * w[target] + eps / n_classes * np.sum(w), 0.0)
        denominator = np.sum(weight * w[target] * kept)
    else:
        a = w * ((1 - eps) * target.astype(np.float64) + eps / n_classes)
        a_sum = np.sum(a, axis=1)
        denominator = np.sum(weight)
    p = _plain_softmax(logits)
    expected = (weight * a_sum)[:, None] * p * (1 - p)
    if reduction == "mean":
        expected /= denominator
    result = module.softmax_cross_entropy(logits, target, sample_weight=weight,
                                          reduction=reduction, hess=True, **options)
    # p (1 - p) as written here loses digits of 1 - p_k when p_k is near 1.
    np.testing.assert_allclose(result.hess, expected,
                               rtol=1e-6 if dtype == np.float32 else 1e-11,
                               atol=1e-7 * np.max(np.abs(expected)))


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_kl_hess_is_A_p_1_minus_p(module):
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=2.0, size=(11, 4))
    target = rng.uniform(size=(11, 4))          # rows not summing to 1: A = sum_c t_c
    result = module.kl_divergence(logits, target, reduction="sum", hess=True)
    p = _plain_softmax(logits)
    np.testing.assert_allclose(result.hess, target.sum(axis=1)[:, None] * p * (1 - p),
                               rtol=1e-11)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_hess_by_hand(module):
    """Small closed-form values."""
    h = module.mse([1.0, 2.0], [0.0, 5.0], hess=True).hess             # 2 / 2 elements
    np.testing.assert_array_equal(h, [1.0, 1.0])
    h = module.huber([0.5, 1.0, 3.0, -2.0], [0.0, 0.0, 0.0, 0.0], delta=1.0,
                     reduction="sum", sample_weight=[1.0, 2.0, 3.0, 4.0], hess=True).hess
    np.testing.assert_array_equal(h, [1.0, 2.0, 0.0, 0.0])              # |r| = delta: 1
    h = module.binary_cross_entropy([0.0, 0.0], [1.0, 0.0], pos_weight=3.0,
                                    reduction="sum", hess=True).hess
    np.testing.assert_array_equal(h, [0.75, 0.25])      # (3 t + 1 - t) / 4
    h = module.softmax_cross_entropy([[0.0, 0.0], [5.0, 5.0]], [0, 1], reduction="none",
                                     hess=True).hess
    np.testing.assert_array_equal(h, [[0.25, 0.25], [0.25, 0.25]])


# --- extreme values -----------------------------------------------------------

def _extreme_logits(dtype):
    big = 3e38 if dtype == np.float32 else 1e300
    return np.array([0.0, 1.0, -1.0, 30.0, -30.0, 1e4, -1e4, big, -big, np.inf, -np.inf,
                     np.nan], dtype=dtype)


@pytest.mark.parametrize("pos_weight", [None, 2.5])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_hess_at_extreme_logits(dtype, pos_weight):
    logits = np.repeat(_extreme_logits(dtype), 3)
    target = np.tile(np.array([0.0, 0.3, 1.0], dtype=dtype), logits.size // 3)
    fast = fastloss.binary_cross_entropy(logits, target, pos_weight=pos_weight,
                                         reduction="none", hess=True)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = fastloss.reference.binary_cross_entropy(logits, target, pos_weight=pos_weight,
                                                      reduction="none", hess=True)
    is_nan = np.isnan(logits)
    assert np.isnan(fast.hess[is_nan]).all() and np.isnan(ref.hess[is_nan]).all()
    for hess in (fast.hess, ref.hess):
        assert np.isfinite(hess[~is_nan]).all() and (hess[~is_nan] >= 0).all()
        # sigma(x) sigma(-x) = e / (1 + e)^2 <= exp(-|x|): 0 (or tiny) far out, never NaN
        far = np.abs(logits) >= 1e4
        assert (hess[far] <= 1e-300).all()
        assert (hess[np.isinf(logits)] == 0).all()
    bound = _relative_error_bound(ref.hess, dtype, ULPS[np.dtype(dtype)])
    error = np.abs(fast.hess.astype(np.float64) - ref.hess)
    assert (error[~is_nan] <= bound[~is_nan]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_huber_and_mse_hess_with_nan_and_inf(dtype):
    pred = np.array([0.0, 2.0, np.nan, np.inf, -np.inf, 1e30], dtype=dtype)
    target = np.zeros_like(pred)
    for module in BOTH:
        with np.errstate(invalid="ignore", over="ignore"):
            h = module.huber(pred, target, reduction="sum", hess=True).hess
            np.testing.assert_array_equal(h, [1.0, 0.0, np.nan, 0.0, 0.0, 0.0])
            h = module.mse(pred, target, reduction="sum", hess=True).hess
        # d^2 r^2 / dp^2 = 2 does not depend on r
        np.testing.assert_array_equal(h, np.full(pred.shape, 2.0))


def _extreme_rows(dtype):
    big = 3e38 if dtype == np.float32 else 1e300
    inf, nan = np.inf, np.nan
    return np.array([
        [0.0, 0.0, 0.0],
        [1e4, 0.0, 0.0],           # p_k -> 1: hess ~ 0, not NaN
        [0.0, -1e4, 1e4],
        [big, -big, 0.0],
        [30.0, 0.0, -30.0],
        [inf, 0.0, 0.0],
        [inf, inf, 0.0],
        [-inf, 0.0, 1.0],
        [-inf, -inf, -inf],
        [nan, 0.0, 0.0],
        [0.0, nan, 1.0],
    ], dtype=dtype)


@pytest.mark.parametrize("target_kind", ["labels", "probabilities", "kl"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_multiclass_hess_at_extreme_logits(dtype, target_kind):
    logits = _extreme_rows(dtype)
    n_rows = logits.shape[0]
    if target_kind == "labels":
        target = np.arange(n_rows) % 3
    else:
        target = np.tile(np.array([0.2, 0.0, 0.8], dtype=dtype), (n_rows, 1))
    name = "kl_divergence" if target_kind == "kl" else "softmax_cross_entropy"
    fast = getattr(fastloss, name)(logits, target, reduction="none", hess=True)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ref = getattr(fastloss.reference, name)(logits, target, reduction="none", hess=True)
    nan_rows = np.isnan(logits).any(axis=1)
    for hess in (fast.hess, ref.hess):
        assert np.isnan(hess[nan_rows]).all()
        assert np.isfinite(hess[~nan_rows]).all() and (hess[~nan_rows] >= 0).all()
        assert (hess[1] <= 1e-300).all() and (hess[2] <= 1e-300).all()
        assert (hess[3] <= 1e-300).all() and (hess[5] == 0).all()
    fast_hess, ref_hess = fast.hess[~nan_rows], ref.hess[~nan_rows]
    bound = _relative_error_bound(ref_hess, dtype, ULPS[np.dtype(dtype)])
    assert (np.abs(fast_hess.astype(np.float64) - ref_hess) <= bound).all()


def test_ignored_rows_have_zero_hess_even_with_nan_logits():
    logits = np.array([[np.nan, 1.0], [0.0, 1.0]])
    for module in BOTH:
        result = module.softmax_cross_entropy(logits, [-100, 0], ignore_index=-100,
                                              reduction="sum", hess=True)
        np.testing.assert_array_equal(result.hess[0], [0.0, 0.0])
        assert np.isfinite(result.hess[1]).all() and (result.hess[1] > 0).all()


# --- errors --------------------------------------------------------------------

def _call_args(name, dtype=np.float64):
    """Valid (pred, target, further inputs by name) of shape (6, 3) for ``name``: those of
    its first test case (gaussian_nll's var from its default option)."""
    rng = np.random.default_rng(1)
    case = next(case for case in ALL_CASES if case.name == name)
    pred, target = case.make_inputs(rng, (6, 3), dtype)
    more = {key: value for key, value in case.options[next(iter(case.options))]((6, 3)).items()
            if key in case.spec.inputs}
    return pred, target, more


@pytest.mark.parametrize("with_out", [False, True], ids=["no-out", "out=pred"])
@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("name", WITH_HESS)
def test_hess_without_grad_is_an_error_and_touches_nothing(name, module, with_out):
    pred, target, more = _call_args(name)
    weight = np.linspace(0.5, 1.5, pred.shape[0])
    before = snapshot(pred, target, weight)
    with pytest.raises(ValueError, match="hess=True needs grad=True"):
        getattr(module, name)(pred, target, sample_weight=weight, grad=False, hess=True,
                              out=pred if with_out else None, **more)
    assert_unchanged(before, [pred, target, weight])


@pytest.mark.parametrize("value", ["yes", 1, None, np.array([True])])
@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("name", WITH_HESS)
def test_hess_must_be_a_bool(name, module, value):
    pred, target, more = _call_args(name)
    with pytest.raises(TypeError, match="hess must be True or False"):
        getattr(module, name)(pred, target, hess=value, **more)


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("name", WITH_HESS)
def test_numpy_bool_is_accepted(name, module):
    pred, target, more = _call_args(name)
    assert type(getattr(module, name)(pred, target, hess=np.bool_(True), **more)) \
        is fastloss.LossGradHess
    assert type(getattr(module, name)(pred, target, hess=np.bool_(False), **more)) \
        is fastloss.LossGrad


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
def test_only_the_declared_losses_take_hess(module):
    for name in WITH_HESS:
        parameter = inspect.signature(getattr(module, name)).parameters["hess"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is False
    for name in WITHOUT_HESS:
        assert "hess" not in inspect.signature(getattr(module, name)).parameters
    with pytest.raises(TypeError):
        module.hinge([1.0, -1.0], [1, -1], hess=True)
    for name in REFUSING_HESS:
        with pytest.raises(ValueError, match="no Hessian"):
            getattr(module, name)([1.0, -1.0], [0.5, 2.0], hess=True)
        assert type(getattr(module, name)([1.0, -1.0], [0.5, 2.0], hess=False)) is fastloss.LossGrad
    assert "LossGradHess" in module.__all__


@pytest.mark.parametrize("name", WITH_HESS)
def test_fast_and_reference_signatures_agree(name):
    assert inspect.signature(getattr(fastloss, name)) == \
        inspect.signature(getattr(fastloss.reference, name))


# --- out=, threads, empty means ------------------------------------------------------

@pytest.mark.parametrize("out_mode", ["fresh", "pred"])
@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", WITH_HESS)
def test_out_receives_the_gradient_and_hess_is_fresh(name, dtype, module, out_mode):
    pred, target, more = _call_args(name, dtype)
    weight = np.linspace(0.5, 1.5, pred.shape[0])
    function = getattr(module, name)
    expected = function(pred, target, sample_weight=weight, hess=True, **more)
    pred = pred.copy()
    out = pred if out_mode == "pred" else np.full(pred.shape, np.nan, dtype)
    inputs = [pred, target, weight, *more.values()]
    result = function(pred, target, sample_weight=weight, hess=True, out=out, **more)
    assert pred_grad(result.grad) is out
    np.testing.assert_array_equal(out, pred_grad(expected.grad))
    # in place, the kernels read the exps from the buffer the gradient goes to
    np.testing.assert_array_equal(result.hess, expected.hess)
    for array in inputs + [out]:
        assert not np.shares_memory(result.hess, array)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,shape", [
    ("mse", (70_001,)), ("huber", (20_001, 5)), ("binary_cross_entropy", (20_001, 5)),
    ("softmax_cross_entropy", (20_003, 7)), ("kl_divergence", (20_003, 7))])
def test_threads_give_identical_hess(name, shape, dtype, weighted, reduction):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    make = {"mse": regression_inputs, "huber": regression_inputs,
            "binary_cross_entropy": bce_inputs, "softmax_cross_entropy": label_inputs,
            "kl_divergence": probability_inputs}[name]
    pred, target = make(rng, shape, dtype)
    weight = rng.uniform(0.5, 2.0, size=shape[0]) if weighted else None
    function = getattr(fastloss, name)
    one = function(pred, target, sample_weight=weight, reduction=reduction, hess=True,
                   n_threads=1)
    two = function(pred, target, sample_weight=weight, reduction=reduction, hess=True,
                   n_threads=2)
    assert one.hess.tobytes() == two.hess.tobytes()
    assert one.grad.tobytes() == two.grad.tobytes()


@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("name", WITH_HESS)
def test_mean_over_nothing_has_zero_hess(name, module):
    pred, target, more = _call_args(name, np.float32)
    function = getattr(module, name)
    cases = [dict(sample_weight=np.zeros(pred.shape[0]), **more),
             dict(pred=pred[:0], target=target[:0], **{k: v[:0] for k, v in more.items()})]
    if name == "softmax_cross_entropy":
        cases.append(dict(target=np.full(pred.shape[0], -100), ignore_index=-100))
    for case in cases:
        x, t = case.pop("pred", pred), case.pop("target", target)
        result = function(x, t, hess=True, **case)
        assert result.loss == 0.0
        assert result.hess.shape == x.shape and result.hess.dtype == np.float32
        grads = result.grad if isinstance(result.grad, tuple) else (result.grad,)
        assert not result.hess.any() and not any(g.any() for g in grads)


@pytest.mark.parametrize("value", ["yes", 1, None])
@pytest.mark.parametrize("module", BOTH, ids=BOTH_IDS)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_grad_must_be_a_bool_on_every_loss(case, module, value):
    """grad is checked like hess: a truthy non-bool is a mistake, not a request."""
    pred, target = case.make_inputs(np.random.default_rng(2), shape_for(case, 4, 3),
                                    np.float64)
    with pytest.raises(TypeError, match="grad must be True or False"):
        getattr(module, case.name)(pred, target, grad=value)
    assert getattr(module, case.name)(pred, target, grad=np.bool_(False)).grad is None
