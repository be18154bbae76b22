"""An exact oracle for every loss, and the ulp error measure.

Every function here takes the same (finite) inputs as its twin in
``fastloss`` and returns its loss and gradient, exact for the purpose of
measuring errors in ulps.  Two arithmetics compute the same formulas:

* ``MP`` (for float64 results): mpmath at ``PREC`` = 200 bits.  The inputs
  are binary floating-point numbers, so converting them is exact, and each
  operation afterwards rounds at 2**-200 relative.
* ``F64`` (for float32 results): NumPy float64, vectorised.  Every value is
  a product, quotient, exp, log or log1p of exact inputs, or a sum of terms
  of one sign (math.fsum, correctly rounded).  Each such step multiplies
  the relative error by at most (1 + a few 2**-53); a logit difference
  x_j - m of two float32 numbers is rounded once (relative 2**-53, that is
  at most 2**-53 * 2e4 absolute in the suite's +-1e4 range, 2**-38 relative
  on exp(x_j - m)).  NumPy's float64 exp, log and log1p are within a few
  float64 ulps.  The total is below 2**-30 relative, 2**-7 float32 ulp: an
  oracle for float32 to within 1 % of an ulp.  Overflow and underflow of
  float64 cannot occur on float32 inputs except where a float32 result is 0
  or where the formulas below switch to the log domain.

No formula cancels catastrophically, which is what makes 200 bits (or
float64 for float32) enough: wherever a textbook formula subtracts two
nearly equal quantities, the oracle uses a form without the subtraction:

* log-sum-exp: with m = max_j x_j attained first at index a,
  lse = m + log1p(s') where s' = sum_{j != a} exp(x_j - m); so log p_a =
  -log1p(s') keeps full relative accuracy even when p_a is within 1e-300
  of 1, and log(1 - p_a) = log s' - log1p(s') with log s' a log-sum-exp of
  the other logits (finite even when s' underflows).
* log(1 - p_c) = log1p(-p_c) for c != a, where p_c <= 1/2; the odds
  p_c / (1 - p_c) with 1 - p_c = (s - e_c) / s, where s - e_c >= e_a = 1:
  the subtraction loses at most log2(C) bits.
* softplus(x) = max(x, 0) + log1p(exp(-|x|)) and the sigmoid from exp(-|x|).

Each oracle function returns an :class:`Exact`: the per-sample losses and
the gradient, each with its *scale*, the magnitude an error is measured
against (see :func:`ulp_error`).  :func:`reduce` then applies the sample
weights and the reduction exactly as the API defines them.

The scale: a value that is a difference of terms, such as sigma(x) - t, is
measured against its largest term (a float computation of a difference
can only be accurate relative to its terms); every other value is measured
against itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np

from fastloss._registry import REGISTRY

PREC = 200
_ctx = mpmath.MPContext()
_ctx.prec = PREC


class _MP:
    """mpmath arithmetic on object arrays of mpf."""
    name = "mpmath"
    dtype = object
    zero = _ctx.mpf(0)
    one = _ctx.mpf(1)
    inf = _ctx.inf
    _mpf = np.frompyfunc(lambda v: _ctx.mpf(float(v)), 1, 1)
    _exp = np.frompyfunc(_ctx.exp, 1, 1)
    _log = np.frompyfunc(_ctx.log, 1, 1)
    _log1p = np.frompyfunc(_ctx.log1p, 1, 1)

    @classmethod
    def array(cls, values):
        """The exact mpmath values of a float array, as an object array."""
        a = np.asarray(values, dtype=np.float64)
        out = np.empty(a.shape, dtype=object)
        if a.size:
            out[...] = cls._mpf(a)
        return out

    @staticmethod
    def _apply(function, a):
        out = np.empty(np.shape(a), dtype=object)
        if out.size:
            out[...] = function(a)
        return out

    @classmethod
    def exp(cls, a):
        return cls._apply(cls._exp, a)

    @classmethod
    def log(cls, a):
        return cls._apply(cls._log, a)

    @classmethod
    def log1p(cls, a):
        return cls._apply(cls._log1p, a)

    @staticmethod
    def sum(values):
        return _ctx.fsum(np.ravel(values))

    @staticmethod
    def scalar(value):
        return _ctx.mpf(float(value))

    @staticmethod
    def scalar_log1p(value):
        return _ctx.log1p(value)

    @staticmethod
    def scalar_log(value):
        return _ctx.log(value)


class _F64:
    """NumPy float64 arithmetic (an oracle for float32 results: see the module doc)."""
    name = "float64"
    dtype = np.float64
    zero = 0.0
    one = 1.0
    inf = np.inf

    @staticmethod
    def array(values):
        return np.array(values, dtype=np.float64)

    @staticmethod
    def exp(a):
        with np.errstate(under="ignore", over="ignore"):
            return np.exp(a)

    @staticmethod
    def log(a):
        with np.errstate(divide="ignore"):
            return np.log(a)

    @staticmethod
    def log1p(a):
        with np.errstate(divide="ignore"):
            return np.log1p(a)

    @staticmethod
    def sum(values):
        return math.fsum(np.ravel(values))

    scalar = staticmethod(float)
    scalar_log1p = staticmethod(math.log1p)

    @staticmethod
    def scalar_log(value):
        return math.log(value) if value > 0 else -math.inf


MP = _MP
F64 = _F64


def backend_for(dtype):
    """The arithmetic that is exact enough for results of this dtype."""
    return F64 if np.dtype(dtype) == np.float32 else MP


def mp_array(values):
    """The exact mpmath values of a float array, as an object array."""
    return MP.array(values)


def _abs(a):
    return np.abs(a) if np.size(a) else a


def _maximum(*arrays):
    """Elementwise max of arrays of non-negative values."""
    out = arrays[0].copy()
    for a in arrays[1:]:
        out = np.where(a > out, a, out)
    return out


@dataclass
class Exact:
    """Exact per-sample losses and gradient, with their scales.

    loss, loss_scale: shape (N,) for per-row losses, (N,) or (N, K) for the
        elementwise losses (one loss per element).
    grad, grad_scale: the shape of the prediction.
    denominator: the "mean" divisor, per the API.
    backend: the arithmetic of the arrays (MP or F64).
    """
    loss: np.ndarray
    loss_scale: np.ndarray
    grad: np.ndarray
    grad_scale: np.ndarray
    denominator: object
    backend: type = MP


def reduce(exact, reduction, sample_weight=None):
    """Exact (loss, loss_scale, grad, grad_scale) of one reduction.

    "none": w_i l_i per sample; "sum": sum_i w_i l_i; "mean": the sum divided
    by the denominator (0 and a zero gradient when it is 0).  The gradient
    of sample i is w_i g_i, divided by the denominator for "mean".
    """
    B = exact.backend
    loss, loss_scale, grad, grad_scale = exact.loss, exact.loss_scale, exact.grad, exact.grad_scale
    if sample_weight is not None:
        w = B.array(sample_weight)
        w_loss = w.reshape(w.shape + (1,) * (loss.ndim - 1))
        w_grad = w.reshape(w.shape + (1,) * (grad.ndim - 1))
        loss, loss_scale = loss * w_loss, loss_scale * _abs(w_loss)
        grad, grad_scale = grad * w_grad, grad_scale * _abs(w_grad)
    if reduction == "none":
        return loss, loss_scale, grad, grad_scale
    total = B.sum(loss)
    total_scale = B.sum(loss_scale)
    if reduction == "sum":
        return total, total_scale, grad, grad_scale
    denominator = exact.denominator
    if denominator == 0:
        zero = np.full(grad.shape, B.zero, dtype=B.dtype)
        return B.zero, B.zero, zero, zero
    return (total / denominator, total_scale / denominator, grad / denominator,
            grad_scale / denominator)


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
    e = np.where(v == 0, min_exponent, np.maximum(e - 1, min_exponent))
    return np.ldexp(1.0, e - precision + 1)


_to_float = np.frompyfunc(float, 1, 1)


def _split(values):
    """Exact values -> (hi, lo) float64 arrays with hi + lo = value to ~2**-106.

    A float64 array (the F64 oracle) is its own hi, with lo = 0.
    """
    values = np.asarray(values)
    if values.dtype != object:
        return values.astype(np.float64), np.zeros(values.shape)
    hi = np.zeros(values.shape)
    if values.size:
        with np.errstate(over="ignore"):
            hi = np.asarray(_to_float(values), dtype=np.float64).reshape(values.shape)
    finite = np.isfinite(hi)
    lo = np.zeros(values.shape)
    if finite.any():
        lo[finite] = np.asarray(_to_float(values[finite] - MP.array(hi[finite])),
                                dtype=np.float64)
    return hi, lo


def _as_array(values):
    """An array of exact values (object or float64) from an array or a scalar."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (float, int, np.floating)):
        return np.asarray(values, dtype=np.float64)
    out = np.empty((), dtype=object)
    out[()] = values
    return out


def ulp_error(computed, exact, dtype, scale=None, stored=True):
    """|computed - exact| in ulps of dtype at the scale (default: at |exact|).

    computed: float array (or scalar) produced by an implementation.
    exact: the exact values (an oracle array, object or float64, or a scalar).
    scale: the magnitudes to measure against (same kinds), or None.
    stored: the value is stored in ``dtype`` (per-sample losses, gradients):
        an exact value that rounds to +-inf in dtype must come out as that
        inf (error 0) -- any finite answer there is an infinite error.  A
        reduced loss (a Python float) is not stored in float32, so pass
        stored=False for it.
    A NaN where the exact value is finite is an infinite error.
    Returns a float64 array of errors of the shape of ``exact``.
    """
    dtype = np.dtype(dtype)
    exact = _as_array(exact)
    c = np.asarray(computed, dtype=np.float64).reshape(exact.shape)
    hi, lo = _split(exact)
    if stored:
        with np.errstate(over="ignore"):
            rounded = hi.astype(dtype).astype(np.float64)   # the exact value in dtype
        overflow = np.isinf(rounded)
        hi = np.where(overflow, rounded, hi)
        lo = np.where(overflow, 0.0, lo)
    magnitude = np.abs(hi) if scale is None else np.abs(_split(_as_array(scale))[0])
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs((c - hi) - lo)
        error = diff / ulp(np.where(np.isfinite(magnitude), magnitude, 0.0), dtype)
    same_inf = np.isinf(hi) & (c == hi)
    error = np.where(same_inf, 0.0, error)
    error = np.where(np.isnan(error) | np.isinf(hi) & ~same_inf, np.inf, error)
    return error


# --- elementwise losses --------------------------------------------------------

def _elementwise(B, loss, grad, grad_scale, sample_weight):
    row_size = 1 if loss.ndim == 1 else loss.shape[1]
    if sample_weight is None:
        denominator = B.scalar(loss.size)
    else:
        denominator = B.sum(B.array(sample_weight)) * row_size
    return Exact(loss, _abs(loss), grad, grad_scale, denominator, B)


def mse(pred, target, *, sample_weight=None, backend=MP):
    """Exact r^2 and 2 r, r = pred - target."""
    B = backend
    r = B.array(pred) - B.array(target)
    loss, grad = r * r, 2 * r
    return _elementwise(B, loss, grad, _abs(grad), sample_weight)


def huber(pred, target, *, delta=1.0, sample_weight=None, backend=MP):
    """Exact Huber loss and gradient clip(r, -delta, delta)."""
    B = backend
    r = B.array(pred) - B.array(target)
    d = B.scalar(delta)
    abs_r = _abs(r)
    quadratic = abs_r <= d
    loss = np.where(quadratic, r * r / 2, d * (abs_r - d / 2))
    grad = np.where(quadratic, r, np.where(r > 0, d, -d))
    return _elementwise(B, loss, grad, _abs(grad), sample_weight)


def binary_cross_entropy(logits, target, *, pos_weight=None, sample_weight=None, backend=MP):
    """Exact BCE with logits: loss pw t softplus(-x) + (1 - t) softplus(x).

    grad = (1 - t) sigma(x) - pw t sigma(-x), measured against its larger term.
    """
    B = backend
    x, t = B.array(logits), B.array(target)
    pw = B.one if pos_weight is None else B.array(pos_weight)   # scalar or (K,)
    e = B.exp(-_abs(x))                      # exp(-|x|) in (0, 1]
    log1p_e = B.log1p(e)
    positive = x >= 0
    softplus_pos = np.where(positive, x, B.zero) + log1p_e      # softplus(x)
    softplus_neg = np.where(positive, B.zero, -x) + log1p_e     # softplus(-x)
    inv = 1 / (1 + e)
    sigma_pos = np.where(positive, inv, e * inv)                # sigma(x)
    sigma_neg = np.where(positive, e * inv, inv)                # sigma(-x)
    a = pw * t
    b = 1 - t
    loss = a * softplus_neg + b * softplus_pos
    grad = b * sigma_pos - a * sigma_neg
    scale = _maximum(_abs(b * sigma_pos), _abs(a * sigma_neg))
    return _elementwise(B, loss, grad, scale, sample_weight)


def _signed_targets(target):
    t = np.asarray(target, dtype=np.float64)
    if np.all((t == 0) | (t == 1)) and not np.all(t == 1):
        t = 2 * t - 1
    return t


def hinge(scores, target, *, margin=1.0, sample_weight=None, backend=MP):
    """Exact max(0, margin - t s) and its subgradient (-t where positive, else 0)."""
    B = backend
    t = _signed_targets(target)
    z = B.scalar(margin) - B.array(t) * B.array(scores)
    active = np.asarray(z > 0, dtype=bool)
    loss = np.where(active, z, B.zero)
    grad = B.array(np.where(active, -t, 0.0))
    return _elementwise(B, loss, grad, _abs(grad), sample_weight)


def squared_hinge(scores, target, *, margin=1.0, sample_weight=None, backend=MP):
    """Exact max(0, margin - t s)^2 and -2 t max(0, margin - t s)."""
    B = backend
    t = _signed_targets(target)
    z = B.scalar(margin) - B.array(t) * B.array(scores)
    z = np.where(z > 0, z, B.zero)
    grad = -2 * B.array(t) * z
    return _elementwise(B, z * z, grad, _abs(grad), sample_weight)


# --- the softmax family ----------------------------------------------------------

@dataclass
class RowModel:
    """Exact softmax quantities of (N, C) logits, without cancellation.

    m: row max, first attained at argmax = a; d = x - m; log_s: log1p(s'),
    s' = sum_{j != a} exp(d_j); log_others: log s'; p: softmax; log_p:
    log-softmax; log_one_minus_p: log(1 - p); odds: p / (1 - p) for the
    classes other than a (0 at a); cross: p_j p_a / (1 - p_a) for j != a
    (0 at a), computed as p_a exp(d_j - log s').
    """
    backend: type
    argmax: np.ndarray
    m: np.ndarray
    log_s: np.ndarray
    p: np.ndarray
    log_p: np.ndarray
    log_one_minus_p: np.ndarray
    odds: np.ndarray
    cross: np.ndarray


def _row_vector(B, values):
    out = np.empty(len(values), dtype=B.dtype)
    out[:] = values
    return out


def row_model(logits, backend=MP):
    """Exact softmax, log-softmax and log(1 - softmax) of each row (module doc)."""
    B = backend
    x = np.asarray(logits, dtype=np.float64)
    n_rows, n_classes = x.shape
    rows = np.arange(n_rows)
    X = B.array(x)
    argmax = np.argmax(x, axis=1)
    m = X[rows, argmax]
    d = X - m[:, None]                     # x_j - m <= 0
    e = B.exp(d)                           # exp(x_j - m), e[argmax] = 1
    others = np.empty(n_rows, dtype=B.dtype)
    log_others = np.empty(n_rows, dtype=B.dtype)
    for i in range(n_rows):
        a = argmax[i]
        rest = np.concatenate([e[i, :a], e[i, a + 1:]])
        others[i] = B.sum(rest)                           # s' = s - 1
        if n_classes == 1:
            log_others[i] = -B.inf
        else:
            # log s' as a log-sum-exp of the other classes, around their own max
            d_rest = np.concatenate([d[i, :a], d[i, a + 1:]])
            top = d_rest[int(np.argmax(x[i, np.arange(n_classes) != a]))]
            log_others[i] = top + B.scalar_log(B.sum(B.exp(d_rest - top)))
    log_s = _row_vector(B, [B.scalar_log1p(v) for v in others])
    s = 1 + others
    p = e / s[:, None]
    log_p = d - log_s[:, None]
    # log(1 - p_c) = log1p(-p_c) for c != a (p_c <= 1/2: no cancellation, and
    # no rounding of 1 - p_c to 1 when p_c is tiny); at a, log s' - log1p(s')
    log_one_minus_p = B.log1p(-p)
    log_one_minus_p[rows, argmax] = log_others - log_s
    rest = (s[:, None] - e) / s[:, None]
    rest[rows, argmax] = B.one             # odds at a is not used (set to 0 below)
    odds = p / rest
    odds[rows, argmax] = B.zero
    cross = p[rows, argmax][:, None] * B.exp(d - log_others[:, None])
    cross[rows, argmax] = B.zero
    return RowModel(B, argmax, m, log_s, p, log_p, log_one_minus_p, odds, cross)


def _row_denominator(B, sample_weight, row_factor, keep):
    """sum_i sw_i * row_factor_i over the kept rows."""
    factor = row_factor.copy()
    if sample_weight is not None:
        factor = factor * B.array(sample_weight)
    return B.sum(factor[keep]) if keep.any() else B.zero


def _onehot(labels, n_classes):
    t = np.zeros((len(labels), n_classes))
    valid = (labels >= 0) & (labels < n_classes)
    t[np.nonzero(valid)[0], labels[valid]] = 1.0
    return t


def _rows(B, values):
    """Row sums of an (N, C) array, each an exact-as-possible fsum."""
    return _row_vector(B, [B.sum(row) for row in values])


def _ones(B, n):
    return np.full(n, B.one, dtype=B.dtype)


def softmax_cross_entropy(logits, target, *, class_weight=None, ignore_index=None,
                          label_smoothing=0.0, sample_weight=None, model=None, backend=MP):
    """Exact cross-entropy, as torch.nn.functional.cross_entropy for every option.

    With q the target distribution ((1 - eps) onehot(y) + eps / C for labels,
    (1 - eps) t + eps / C for probabilities) and w the class weights:
        loss_i = -sum_c w_c q_c log p_c      (every term >= 0)
        grad_i = (sum_c w_c q_c) p - w q     (measured against its larger term)
    "mean" divides by sum_i sw_i w_{y_i} over the rows not ignored (labels),
    or by sum_i sw_i (probabilities).  Ignored rows: loss 0, gradient 0.
    """
    model = model or row_model(logits, backend)
    B = model.backend
    n_rows, n_classes = np.shape(logits)
    target = np.asarray(target)
    eps = B.scalar(label_smoothing)
    w_float = np.ones(n_classes) if class_weight is None else np.asarray(class_weight, float)
    w = B.array(w_float)
    if target.ndim == 1:
        keep = np.ones(n_rows, bool) if ignore_index is None else target != ignore_index
        q = B.array(_onehot(np.where(keep, target, -1), n_classes))
        row_factor = B.array(np.where(keep, w_float[np.where(keep, target, 0)], 0.0))
    else:
        keep = np.ones(n_rows, bool)
        q = B.array(target)
        row_factor = _ones(B, n_rows)
    q = (1 - eps) * q + eps / n_classes
    wq = w[None, :] * q
    wq[~keep] = B.zero
    loss = _rows(B, wq * -model.log_p)
    first = _rows(B, wq)[:, None] * model.p
    grad = first - wq
    scale = _maximum(_abs(first), _abs(wq))
    denominator = _row_denominator(B, sample_weight, row_factor, keep)
    return Exact(loss, _abs(loss), grad, scale, denominator, B)


def _probability_target(target, n_classes):
    target = np.asarray(target)
    return _onehot(target, n_classes) if target.ndim == 1 else np.asarray(target, np.float64)


def softmax_binary_cross_entropy(logits, target, *, sample_weight=None, model=None,
                                 backend=MP):
    """Exact -sum_c [t_c log p_c + (1 - t_c) log(1 - p_c)] (every term >= 0).

    With a the first argmax, r_c = p_c / (1 - p_c) the odds, T = sum_c t_c and
    S' = sum_{c != a} (1 - t_c) r_c, the gradient
        grad_j = p_j T - t_j + (1 - t_j) r_j - p_j S' - (1 - t_a) p_j r_a   (j != a)
        grad_a = p_a T - t_a + (1 - t_a) p_a - p_a S'
    (at a, (1 - t_a) r_a (1 - p_a) = (1 - t_a) p_a: the two huge terms of the
    textbook form cancel exactly and are not formed).  Measured against its
    largest term.  "mean" averages over rows.
    """
    model = model or row_model(logits, backend)
    B = model.backend
    n_rows, n_classes = np.shape(logits)
    rows, a = np.arange(n_rows), model.argmax
    t = B.array(_probability_target(target, n_classes))
    u = 1 - t
    neg_part = np.where(u == 0, B.zero, -u * model.log_one_minus_p)
    loss = _rows(B, -t * model.log_p + neg_part)
    T = _rows(B, t)[:, None]
    uo = u * model.odds                                  # 0 at a
    S = _rows(B, uo)[:, None]
    u_a = u[rows, a][:, None]
    terms = [model.p * T, t, uo, model.p * S, u_a * model.cross]
    at_a = (1 - t[rows, a]) * model.p[rows, a]
    terms[2][rows, a] = at_a                             # (1 - t_a) p_a, see above
    grad = terms[0] - terms[1] + terms[2] - terms[3] - terms[4]
    scale = _maximum(*[_abs(v) for v in terms])
    denominator = _row_denominator(B, sample_weight, _ones(B, n_rows), np.ones(n_rows, bool))
    return Exact(loss, _abs(loss), grad, scale, denominator, B)


def kl_divergence(logits, target, *, sample_weight=None, model=None, backend=MP):
    """Exact sum_c t_c (log t_c - log p_c) with 0 log 0 = 0; grad (sum t) p - t.

    The loss may cancel (it is 0 when t = p); it is measured against
    sum_c t_c (|log t_c| + |log p_c|), the magnitude of its terms.
    "mean" averages over rows (torch's batchmean).
    """
    model = model or row_model(logits, backend)
    B = model.backend
    n_rows = np.shape(logits)[0]
    t = B.array(target)
    positive = np.asarray(t > 0, dtype=bool)
    log_t = np.where(positive, B.log(np.where(positive, t, B.one)), B.zero)
    tt = np.where(positive, t, B.zero)
    loss = _rows(B, tt * log_t - tt * model.log_p)
    loss_scale = _rows(B, tt * (_abs(log_t) + _abs(model.log_p)))
    first = model.p * _rows(B, t)[:, None]
    grad = first - t
    scale = _maximum(_abs(first), _abs(t))
    denominator = _row_denominator(B, sample_weight, _ones(B, n_rows), np.ones(n_rows, bool))
    return Exact(loss, loss_scale, grad, scale, denominator, B)


def multiclass_hinge(scores, target, *, margin=1.0, kind="weston_watkins", squared=False,
                     sample_weight=None, backend=MP):
    """Exact Weston-Watkins or Crammer-Singer hinge and its subgradient.

    z_j = margin + s_j - s_y (j != y); WW: sum_j max(0, z_j)^q; CS: max(0,
    max_j z_j)^q with the first maximising j.  The subgradient is 0 at z = 0.
    A z is a difference of three terms: the loss and the gradient are measured
    against (margin + |s_j| + |s_y|)^q summed over the active j (for q = 1 the
    gradient is an exact count and is measured against itself).
    """
    B = backend
    s = np.asarray(scores, dtype=np.float64)
    n_rows, n_classes = s.shape
    y = np.asarray(target)
    S = B.array(s)
    mg = B.scalar(margin)
    q = 2 if squared else 1
    loss = np.empty(n_rows, dtype=B.dtype)
    loss_scale = np.empty(n_rows, dtype=B.dtype)
    grad = np.full(s.shape, B.zero, dtype=B.dtype)
    grad_scale = np.full(s.shape, B.zero, dtype=B.dtype)
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
        loss[i] = B.sum([z[j] ** q for j in active])
        loss_scale[i] = B.sum([size[j] ** q for j in active])
        for j in active:
            g = q * z[j] ** (q - 1)
            grad[i, j] = g
            grad[i, y[i]] -= g
            gs = q * size[j] ** (q - 1)
            grad_scale[i, j] = gs
            grad_scale[i, y[i]] += gs
    if q == 1:
        grad_scale = _abs(grad)
    denominator = _row_denominator(B, sample_weight, _ones(B, n_rows), np.ones(n_rows, bool))
    return Exact(loss, loss_scale, grad, grad_scale, denominator, B)


def logsumexp(x, model=None, backend=MP):
    """Exact log-sum-exp of each row, and its scale max(|m|, log s).

    lse = m + log s may cancel when m < 0 (for example x = [-0.7, -0.7]); a
    float computation can only be accurate relative to the larger term.
    """
    model = model or row_model(x, backend)
    return model.m + model.log_s, _maximum(_abs(model.m), _abs(model.log_s))


def softmax(x, model=None, backend=MP):
    """Exact softmax of each row (measured against itself)."""
    return (model or row_model(x, backend)).p


def log_softmax(x, model=None, backend=MP):
    """Exact log-softmax of each row: (x_c - m) - log s, two terms of one sign."""
    return (model or row_model(x, backend)).log_p


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


# --- one call of the suite, end to end ---------------------------------------------

# The registered row utilities (their oracles return values, not an Exact).
UTILITIES = tuple(name for name, spec in REGISTRY.items() if spec.family == "rows")
REDUCTIONS = ("none", "sum", "mean")


def exact_for(function, call, backend, model=None):
    """The exact result of ``function`` (a registered name) on ``call`` (an adversarial.Call).

    For a loss, an :class:`Exact`; for a row utility, (values, scale).
    ``model`` is the call's cached :class:`RowModel`, if any.  The oracle of
    each name is its test case's (tests/cases.py).
    """
    from cases import ORACLES      # (cases imports this module)
    exact = ORACLES[function]
    if function in UTILITIES:
        x = call.args[0]
        model = model or row_model(x, backend)
        values = exact(x, model)
        return values if isinstance(values, tuple) else (values, None)
    kwargs = dict(call.params, sample_weight=call.sample_weight, backend=backend)
    if model is not None:
        kwargs["model"] = model
    return exact(*call.args, **kwargs)


def errors_of(function, implementation, call, exact, dtype):
    """ulp errors of ``implementation`` on ``call``, by kind and reduction.

    Returns {kind: [(label, errors), ...]} with kind "reduced" (sum and mean
    losses), "per_sample" (losses with reduction="none", utility outputs)
    and "grad" (gradient elements of every reduction).
    """
    if function in UTILITIES:
        values, scale = exact
        out = implementation(*call.args)
        return {"per_sample": [("output", ulp_error(out, values, dtype, scale))]}
    found = {"reduced": [], "per_sample": [], "grad": []}
    for reduction in REDUCTIONS:
        with np.errstate(all="ignore"):
            result = implementation(*call.args, **call.params,
                                    sample_weight=call.sample_weight, reduction=reduction)
        # (a loss with several gradients: the first here; tests/test_more_losses.py
        # measures gaussian_nll's gradient for var against its own oracle)
        grad = result.grad[0] if isinstance(result.grad, tuple) else result.grad
        loss_err, grad_err = measure(result.loss, grad, exact, reduction, dtype,
                                     call.sample_weight)
        kind = "per_sample" if reduction == "none" else "reduced"
        found[kind].append((f"loss[{reduction}]", loss_err))
        if grad_err is not None:
            found["grad"].append((f"grad[{reduction}]", grad_err))
    return found
