"""A high-precision oracle for every loss, and the ulp error measure.

Every function here takes the same (finite) inputs as its twin in
``fastloss`` and returns the exact loss and gradient, computed with mpmath
at ``PREC`` = 200 bits.  The inputs are binary floating-point numbers, so
converting them to mpmath is exact; each operation afterwards rounds at
2**-200 relative.  200 bits suffice because the formulas below never
cancel catastrophically: wherever a textbook formula would subtract two
nearly equal quantities, the oracle uses a form without the subtraction:

* log-sum-exp: with m = max_j x_j attained first at index a,
  lse = m + log1p(s') where s' = sum_{j != a} exp(x_j - m); so log p_a =
  -log1p(s') keeps full relative accuracy even when p_a is within 1e-300
  of 1, and 1 - p_a = s' / (1 + s') is computed without forming 1 - p_a.
* 1 - p_c = (s - e_c) / s for c != a, where s - e_c >= e_a = 1: the
  subtraction loses at most log2(C) bits.
* softplus(x) = max(x, 0) + log1p(exp(-|x|)) and the sigmoid from exp(-|x|).

Every other operation is a sum of terms of one sign or a product, whose
relative error stays within a few units of 2**-200, far below the 2**-53 of
float64: the oracle's values are exact for every purpose of the tests.

Each oracle function returns an :class:`Exact` pair: the per-sample losses
and the gradient, each with its *scale*, the magnitude an error is measured
against (see :func:`ulp_error`).  :func:`reduce` then applies the sample
weights and the reduction exactly as the API defines them.

The gradient's scale: a gradient element that is a difference of terms,
such as sigma(x) - t, is measured against its largest term (a float
computation of a difference can only be accurate relative to its terms);
every other value is measured against itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np

PREC = 200
_ctx = mpmath.MPContext()
_ctx.prec = PREC

_ZERO = _ctx.mpf(0)
_ONE = _ctx.mpf(1)
_mpf = np.frompyfunc(lambda v: _ctx.mpf(float(v)), 1, 1)
_exp = np.frompyfunc(_ctx.exp, 1, 1)
_log = np.frompyfunc(_ctx.log, 1, 1)
_log1p = np.frompyfunc(_ctx.log1p, 1, 1)
_to_float = np.frompyfunc(float, 1, 1)


def mp_array(values):
    """The exact mpmath values of a float array, as an object array."""
    a = np.asarray(values, dtype=np.float64)
    out = np.empty(a.shape, dtype=object)
    if a.size:
        out[...] = _mpf(a)
    return out


def _abs(a):
    return np.abs(a) if a.size else a


def _maximum(*arrays):
    """Elementwise max of object arrays of mpf (abs values, so no NaN)."""
    out = arrays[0].copy()
    for a in arrays[1:]:
        out = np.where(a > out, a, out)
    return out


@dataclass
class Exact:
    """Exact per-sample losses and gradient (object arrays of mpf), with scales.

    loss, loss_scale: shape (N,) for per-row losses, (N,) or (N, K) for the
        elementwise losses (one loss per element).
    grad, grad_scale: the shape of the prediction.
    denominator: the "mean" divisor (an mpf), per the API.
    """
    loss: np.ndarray
    loss_scale: np.ndarray
    grad: np.ndarray
    grad_scale: np.ndarray
    denominator: object


def reduce(exact, reduction, sample_weight=None):
    """Exact (loss, loss_scale, grad, grad_scale) of one reduction.

    "none": w_i l_i per sample; "sum": sum_i w_i l_i; "mean": the sum divided
    by the denominator (0 and a zero gradient when it is 0).  The gradient
    of sample i is w_i g_i, divided by the denominator for "mean".
    """
    loss, loss_scale, grad, grad_scale = exact.loss, exact.loss_scale, exact.grad, exact.grad_scale
    if sample_weight is not None:
        w = mp_array(sample_weight)
        w_loss = w.reshape(w.shape + (1,) * (loss.ndim - 1))
        w_grad = w.reshape(w.shape + (1,) * (grad.ndim - 1))
        loss, loss_scale = loss * w_loss, loss_scale * _abs(w_loss)
        grad, grad_scale = grad * w_grad, grad_scale * _abs(w_grad)
    if reduction == "none":
        return loss, loss_scale, grad, grad_scale
    total = _ctx.fsum(loss.ravel())
    total_scale = _ctx.fsum(loss_scale.ravel())
    if reduction == "sum":
        return total, total_scale, grad, grad_scale
    denominator = exact.denominator
    if denominator == 0:
        zero = np.full(grad.shape, _ZERO, dtype=object)
        return _ZERO, _ZERO, zero, zero
    return total / denominator, total_scale / denominator, grad / denominator, grad_scale / denominator


# --- the ulp error ----------------------------------------------------------

_DTYPE_INFO = {
    np.dtype(np.float32): (24, -126),     # (precision in bits, smallest normal exponent)
    np.dtype(np.float64): (53, -1022),
}


def ulp(magnitude, dtype):
    """The unit in the last place of the dtype at |magnitude| (an array of floats).

    ulp(v) = 2**(e - p + 1) with 2**e <= |v| < 2**(e + 1), e clamped below at
    the smallest normal exponent (the subnormal spacing); the exponent is not
    bounded above, so a float64 value beyond float32's range still has a
    float32 ulp (a reduced loss of float32 inputs is a float64 number).
    """
    precision, min_exponent = _DTYPE_INFO[np.dtype(dtype)]
    v = np.abs(np.asarray(magnitude, dtype=np.float64))
    _, e = np.frexp(v)                   # v = f * 2**e with f in [0.5, 1)
    e = np.maximum(e - 1, min_exponent)
    return np.ldexp(1.0, e - precision + 1)


def _split(values):
    """mpf object array -> (hi, lo) float64 arrays with hi + lo = value to ~2**-106."""
    hi = np.asarray(_to_float(values) if values.size else np.zeros(values.shape),
                    dtype=np.float64)
    finite = np.isfinite(hi)
    lo = np.zeros(values.shape)
    if finite.any():
        lo[finite] = np.asarray(_to_float(values[finite] - mp_array(hi[finite])),
                                dtype=np.float64)
    return hi, lo


def ulp_error(computed, exact, dtype, scale=None, stored=True):
    """|computed - exact| in ulps of dtype at the scale (default: at |exact|).

    computed: float array (or scalar) produced by an implementation.
    exact: mpf object array (or a single mpf) of the exact values.
    scale: mpf object array of the magnitudes to measure against, or None.
    stored: the value is stored in ``dtype`` (per-sample losses, gradients):
        an exact value that rounds to +-inf in dtype must come out as that
        inf (error 0) -- any finite answer there is an infinite error.  A
        reduced loss (a Python float) is not stored in float32, so pass
        stored=False for it.
    A NaN where the exact value is finite is an infinite error.
    Returns a float64 array of errors of the shape of ``computed``.
    """
    dtype = np.dtype(dtype)
    exact = np.asarray(exact, dtype=object)
    exact_obj = np.empty(exact.shape, dtype=object)
    exact_obj[...] = exact
    c = np.asarray(computed, dtype=np.float64).reshape(exact_obj.shape)
    hi, lo = _split(exact_obj)
    if stored:
        with np.errstate(over="ignore"):
            rounded = hi.astype(dtype).astype(np.float64)   # the exact value in dtype
        overflow = np.isinf(rounded)
        hi = np.where(overflow, rounded, hi)
        lo = np.where(overflow, 0.0, lo)
    if scale is None:
        magnitude = np.abs(hi)
    else:
        scale_obj = np.empty(exact_obj.shape, dtype=object)
        scale_obj[...] = scale
        magnitude = np.abs(_split(scale_obj)[0])
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs((c - hi) - lo)
        error = diff / ulp(np.where(np.isfinite(magnitude), magnitude, 0.0), dtype)
    same_inf = np.isinf(hi) & (c == hi)
    error = np.where(same_inf, 0.0, error)
    error = np.where(np.isnan(error) | np.isinf(hi) & ~same_inf, np.inf, error)
    return error


# --- elementwise losses --------------------------------------------------------

def _elementwise(loss, grad, grad_scale, sample_weight, loss_scale=None):
    row_size = 1 if loss.ndim == 1 else loss.shape[1]
    if sample_weight is None:
        denominator = _ctx.mpf(loss.size)
    else:
        denominator = _ctx.fsum(mp_array(sample_weight)) * row_size
    return Exact(loss, _abs(loss) if loss_scale is None else loss_scale, grad, grad_scale,
                 denominator)


def mse(pred, target, *, sample_weight=None):
    """Exact r^2 and 2 r, r = pred - target."""
    r = mp_array(pred) - mp_array(target)
    loss, grad = r * r, 2 * r
    return _elementwise(loss, grad, _abs(grad), sample_weight)


def huber(pred, target, *, delta=1.0, sample_weight=None):
    """Exact Huber loss and gradient clip(r, -delta, delta)."""
    r = mp_array(pred) - mp_array(target)
    d = _ctx.mpf(delta)
    abs_r = _abs(r)
    quadratic = abs_r <= d
    loss = np.where(quadratic, r * r / 2, d * (abs_r - d / 2))
    grad = np.where(quadratic, r, np.where(r > 0, d, -d))
    return _elementwise(loss, grad, _abs(grad), sample_weight)


def binary_cross_entropy(logits, target, *, pos_weight=None, sample_weight=None):
    """Exact BCE with logits: loss pw t softplus(-x) + (1 - t) softplus(x).

    grad = (1 - t) sigma(x) - pw t sigma(-x), measured against its larger term.
    """
    x, t = mp_array(logits), mp_array(target)
    if pos_weight is None:
        pw = _ONE
    else:
        pw = mp_array(pos_weight)            # scalar or (K,), broadcasts over rows
    e = _exp(-_abs(x)) if x.size else x      # exp(-|x|) in (0, 1]
    log1p_e = _log1p(e) if x.size else x
    positive = x >= 0
    softplus_pos = np.where(positive, x, _ZERO) + log1p_e      # softplus(x)
    softplus_neg = np.where(positive, _ZERO, -x) + log1p_e     # softplus(-x)
    inv = 1 / (1 + e) if x.size else x
    sigma_pos = np.where(positive, inv, e * inv)               # sigma(x)
    sigma_neg = np.where(positive, e * inv, inv)               # sigma(-x)
    a = pw * t
    b = 1 - t
    loss = a * softplus_neg + b * softplus_pos
    grad = b * sigma_pos - a * sigma_neg
    scale = _maximum(_abs(b * sigma_pos), _abs(a * sigma_neg)) if x.size else x
    return _elementwise(loss, grad, scale, sample_weight)


def _signed_targets(target):
    t = np.asarray(target, dtype=np.float64)
    if np.all((t == 0) | (t == 1)) and not np.all(t == 1):
        t = 2 * t - 1
    return t


def hinge(scores, target, *, margin=1.0, sample_weight=None):
    """Exact max(0, margin - t s) and its subgradient (-t where positive, else 0)."""
    t = _signed_targets(target)
    z = _ctx.mpf(margin) - mp_array(t) * mp_array(scores)
    active = z > 0
    loss = np.where(active, z, _ZERO)
    grad = mp_array(np.where(active.astype(bool), -t, 0.0))
    return _elementwise(loss, grad, _abs(grad), sample_weight)


def squared_hinge(scores, target, *, margin=1.0, sample_weight=None):
    """Exact max(0, margin - t s)^2 and -2 t max(0, margin - t s)."""
    t = _signed_targets(target)
    z = _ctx.mpf(margin) - mp_array(t) * mp_array(scores)
    z = np.where(z > 0, z, _ZERO)
    grad = -2 * mp_array(t) * z
    return _elementwise(z * z, grad, _abs(grad), sample_weight)


# --- the softmax family ----------------------------------------------------------

@dataclass
class RowModel:
    """Exact softmax quantities of (N, C) logits, without cancellation.

    m: row max; log_s: log of sum_j exp(x_j - m) = log1p(s'); p: softmax;
    log_p: log-softmax; one_minus_p: 1 - p; odds: p / (1 - p).
    """
    m: np.ndarray
    log_s: np.ndarray
    p: np.ndarray
    log_p: np.ndarray
    one_minus_p: np.ndarray
    odds: np.ndarray


def row_model(logits):
    """Exact softmax, log-softmax and 1 - softmax of each row (see the module doc)."""
    x = np.asarray(logits, dtype=np.float64)
    n_rows, n_classes = x.shape
    X = mp_array(x)
    argmax = np.argmax(x, axis=1)
    m = X[np.arange(n_rows), argmax]
    d = X - m[:, None]                     # x_j - m <= 0
    e = _exp(d)                            # exp(x_j - m), e[argmax] = 1
    p = np.empty_like(e)
    log_p = np.empty_like(e)
    one_minus_p = np.empty_like(e)
    odds = np.empty_like(e)
    log_s = np.empty(n_rows, dtype=object)
    for i in range(n_rows):
        a = argmax[i]
        others = _ctx.fsum(e[i, :a]) + _ctx.fsum(e[i, a + 1:])    # s' = s - 1
        s = 1 + others
        log_s[i] = _ctx.log1p(others)
        p[i] = e[i] / s
        log_p[i] = d[i] - log_s[i]
        rest = (s - e[i]) / s                  # 1 - p_c, exact enough for c != a
        rest[a] = others / s                   # 1 - p_a without cancellation
        one_minus_p[i] = rest
        with np.errstate(divide="ignore"):
            odds[i] = np.where(rest == 0, _ctx.inf, p[i] / np.where(rest == 0, _ONE, rest))
    return RowModel(m, log_s, p, log_p, one_minus_p, odds)


def _row_denominator(sample_weight, row_factor, keep):
    """sum_i sw_i * row_factor_i over the kept rows."""
    factor = row_factor.copy()
    if sample_weight is not None:
        factor = factor * mp_array(sample_weight)
    return _ctx.fsum(factor[keep]) if keep.any() else _ZERO


def _onehot(labels, n_classes):
    t = np.zeros((len(labels), n_classes))
    valid = (labels >= 0) & (labels < n_classes)
    t[np.nonzero(valid)[0], labels[valid]] = 1.0
    return t


def softmax_cross_entropy(logits, target, *, class_weight=None, ignore_index=None,
                          label_smoothing=0.0, sample_weight=None, model=None):
    """Exact cross-entropy, as torch.nn.functional.cross_entropy for every option.

    With q the target distribution ((1 - eps) onehot(y) + eps / C for labels,
    (1 - eps) t + eps / C for probabilities) and w the class weights:
        loss_i = -sum_c w_c q_c log p_c      (every term >= 0)
        grad_i = (sum_c w_c q_c) p - w q     (measured against its larger term)
    "mean" divides by sum_i sw_i w_{y_i} over the rows not ignored (labels),
    or by sum_i sw_i (probabilities).  Ignored rows: loss 0, gradient 0.
    """
    x = np.asarray(logits, dtype=np.float64)
    n_rows, n_classes = x.shape
    model = model or row_model(x)
    target = np.asarray(target)
    eps = _ctx.mpf(label_smoothing)
    w = mp_array(np.ones(n_classes) if class_weight is None else class_weight)
    labels = target.ndim == 1
    if labels:
        keep = np.ones(n_rows, bool) if ignore_index is None else target != ignore_index
        q = mp_array(_onehot(np.where(keep, target, -1), n_classes))
        row_factor = np.array([w[y] if k else _ZERO for y, k in zip(target, keep)],
                              dtype=object).reshape(n_rows)
    else:
        keep = np.ones(n_rows, bool)
        q = mp_array(target)
        row_factor = np.full(n_rows, _ONE, dtype=object)
    q = (1 - eps) * q + eps / n_classes
    wq = w[None, :] * q
    wq[~keep] = _ZERO
    loss = np.array([_ctx.fsum(row) for row in (wq * -model.log_p)], dtype=object).reshape(n_rows)
    total_weight = np.array([_ctx.fsum(row) for row in wq], dtype=object).reshape(n_rows)
    first = total_weight[:, None] * model.p
    grad = first - wq
    scale = _maximum(_abs(first), _abs(wq))
    denominator = _row_denominator(sample_weight, row_factor, keep)
    return Exact(loss, _abs(loss), grad, scale, denominator)


def _rows(values):
    """Row sums of an (N, C) object array, each an exact-as-possible fsum."""
    return np.array([_ctx.fsum(row) for row in values], dtype=object).reshape(len(values))


def _probability_target(target, n_classes):
    target = np.asarray(target)
    return _onehot(target, n_classes) if target.ndim == 1 else np.asarray(target, np.float64)


def softmax_binary_cross_entropy(logits, target, *, sample_weight=None, model=None):
    """Exact -sum_c [t_c log p_c + (1 - t_c) log(1 - p_c)] (every term >= 0).

    grad_j = p_j T - t_j + (1 - t_j) p_j / (1 - p_j) - p_j S, with T = sum_c t_c
    and S = sum_c (1 - t_c) p_c / (1 - p_c); measured against its largest term.
    "mean" averages over rows.
    """
    x = np.asarray(logits, dtype=np.float64)
    n_rows, n_classes = x.shape
    model = model or row_model(x)
    t = mp_array(_probability_target(target, n_classes))
    u = 1 - t
    with np.errstate(divide="ignore"):
        log_rest = _log(model.one_minus_p)
    # 0 * log 0 = 0: a class with p_c = 1 exactly only occurs for C = 1
    neg_part = np.where(u == 0, _ZERO, -u * np.where(model.one_minus_p == 0, _ONE, log_rest))
    loss = _rows(-t * model.log_p + neg_part)
    T = _rows(t)
    uo = np.where(u == 0, _ZERO, u * np.where(np.isinf(model.odds.astype(float)), _ZERO,
                                              model.odds))
    S = _rows(uo)
    terms = [model.p * T[:, None], t, uo, model.p * S[:, None]]
    grad = terms[0] - terms[1] + terms[2] - terms[3]
    scale = _maximum(*[_abs(a) for a in terms])
    denominator = _row_denominator(sample_weight, np.full(n_rows, _ONE, dtype=object),
                                   np.ones(n_rows, bool))
    return Exact(loss, _abs(loss), grad, scale, denominator)


def kl_divergence(logits, target, *, sample_weight=None, model=None):
    """Exact sum_c t_c (log t_c - log p_c) with 0 log 0 = 0; grad (sum t) p - t.

    The loss may cancel (it is 0 when t = p); it is measured against
    sum_c t_c (|log t_c| + |log p_c|), the magnitude of its terms.
    "mean" averages over rows (torch's batchmean).
    """
    x = np.asarray(logits, dtype=np.float64)
    n_rows, n_classes = x.shape
    model = model or row_model(x)
    t = mp_array(target)
    positive = t > 0
    log_t = np.where(positive, _log(np.where(positive, t, _ONE)), _ZERO)
    tt = np.where(positive, t, _ZERO)
    loss = _rows(tt * (log_t - model.log_p))
    loss_scale = _rows(tt * (_abs(log_t) + _abs(model.log_p)))
    T = _rows(t)
    first = model.p * T[:, None]
    grad = first - t
    scale = _maximum(_abs(first), _abs(t))
    denominator = _row_denominator(sample_weight, np.full(n_rows, _ONE, dtype=object),
                                   np.ones(n_rows, bool))
    return Exact(loss, loss_scale, grad, scale, denominator)


def multiclass_hinge(scores, target, *, margin=1.0, kind="weston_watkins", squared=False,
                     sample_weight=None):
    """Exact Weston-Watkins or Crammer-Singer hinge and its subgradient.

    z_j = margin + s_j - s_y (j != y); WW: sum_j max(0, z_j)^q; CS: max(0,
    max_j z_j)^q with the first maximising j.  The subgradient is 0 at z = 0.
    A z is a difference of three terms: the loss and the gradient are measured
    against (margin + |s_j| + |s_y|)^q summed over the active j (for q = 1 the
    gradient is an exact count and is measured against itself).
    """
    s = np.asarray(scores, dtype=np.float64)
    n_rows, n_classes = s.shape
    y = np.asarray(target)
    S = mp_array(s)
    mg = _ctx.mpf(margin)
    q = 2 if squared else 1
    loss = np.empty(n_rows, dtype=object)
    loss_scale = np.empty(n_rows, dtype=object)
    grad = np.full(s.shape, _ZERO, dtype=object)
    grad_scale = np.full(s.shape, _ZERO, dtype=object)
    for i in range(n_rows):
        sy = S[i, y[i]]
        z = mg + S[i] - sy
        size = mg + _abs(S[i]) + abs(sy)
        others = [j for j in range(n_classes) if j != y[i]]
        if kind == "weston_watkins":
            active = [j for j in others if z[j] > 0]
        else:
            best = max(others, key=lambda j: (s[i, j], -j)) if others else None
            active = [best] if best is not None and z[best] > 0 else []
        loss[i] = _ctx.fsum(z[j] ** q for j in active)
        loss_scale[i] = _ctx.fsum(size[j] ** q for j in active)
        for j in active:
            g = q * z[j] ** (q - 1)
            grad[i, j] = g
            grad[i, y[i]] -= g
            gs = q * size[j] ** (q - 1)
            grad_scale[i, j] = gs
            grad_scale[i, y[i]] += gs
    if q == 1:
        grad_scale = _abs(grad)
    denominator = _row_denominator(sample_weight, np.full(n_rows, _ONE, dtype=object),
                                   np.ones(n_rows, bool))
    return Exact(loss, loss_scale, grad, grad_scale, denominator)


def logsumexp(x, model=None):
    """Exact log-sum-exp of each row, and its scale max(|m|, log s).

    lse = m + log s may cancel when m < 0 (for example x = [-0.7, -0.7]); a
    float computation can only be accurate relative to the larger term.
    """
    model = model or row_model(x)
    return model.m + model.log_s, _maximum(_abs(model.m), _abs(model.log_s))


def softmax(x, model=None):
    """Exact softmax of each row (measured against itself)."""
    model = model or row_model(x)
    return model.p


def log_softmax(x, model=None):
    """Exact log-softmax of each row: (x_c - m) - log s, two terms of one sign."""
    model = model or row_model(x)
    return model.log_p


# --- measuring an implementation -------------------------------------------------

def measure(loss, grad, exact, reduction, dtype, sample_weight=None):
    """ulp errors of one call's (loss, grad) against an :class:`Exact`.

    Returns (loss errors, gradient errors); the loss errors are one value for
    "sum" and "mean" (measured in ulps of dtype with an unbounded exponent,
    since a reduced loss is a float64 Python float) and one per sample for
    "none"; the gradient errors are None when grad is None.
    """
    exact_loss, loss_scale, exact_grad, grad_scale = reduce(exact, reduction, sample_weight)
    loss_errors = ulp_error(loss, exact_loss, dtype, loss_scale, stored=reduction == "none")
    grad_errors = None if grad is None else ulp_error(grad, exact_grad, dtype, grad_scale)
    return np.atleast_1d(loss_errors), grad_errors
