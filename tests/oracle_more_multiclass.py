"""Exact oracles of softmax_cross_entropy's z_loss and softcap, and of softmax_focal_loss.

In the style of tests/oracle.py (whose arithmetics, ``Exact``, ``reduce`` and
``ulp_error`` they use): ``MP`` (mpmath at 200 bits) for float64 results,
``F64`` (NumPy float64 without cancellation) for float32 results.  Every
formula is written without subtracting nearly equal quantities:

* the row quantities come from :func:`capped_rows`: with m the row maximum
  at its first position a, e_c = exp(x_c - m), s = sum_c e_c,
  log p_c = (x_c - m) - log1p(sum_{c != a} e_c);
* 1 - p_y, the focal loss's q, is sum_{c != y} e_c / s (a sum of positive
  terms), never 1 - p_y: at 200 bits the latter loses everything when
  1 - p_y is below 2^-200 (the suite has 1 - p_y = 1e-200);
* lse = m + log1p(...) may cancel when m < 0: the z-loss terms are measured
  against the magnitudes of m and log1p(...), as tests/oracle.py measures
  the log-sum-exp;
* the soft-capped logits x' = c tanh(x / c) and their slope
  sech^2(x / c) are computed in the backend's arithmetic (mpmath's tanh and
  sech at 200 bits; NumPy's tanh and 4 q / (1 + q)^2 with q = exp(-2|x| / c)
  in float64, a relative 2^-52 or so, far below a float32 ulp).

One allowance, for float64 results with softcap only: a float64 kernel
cannot hold the capped logits exactly, and one rounding of x'_c (a relative
2^-53) moves exp(x'_c - m') by |x'_c - m'| (up to 2c) times that, which can
be many ulps of a small result.  So with softcap a float64 value is measured
against its ordinary scale plus its sensitivity to one relative rounding of
every capped logit, sum_c |d value / d x'_c| |x'_c| (the same principle as
measuring a difference against its terms: an error of the inputs that no
float64 computation avoids, added to the computation's own).  float32 results (computed with
x' in float64 by the kernels) get no such allowance: their F64 oracle
holds x' to 2^-52 and they are measured as every other loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np

import oracle
from oracle import MP, F64, Exact, _abs, _maximum, _onehot, _rows

_sech = np.frompyfunc(lambda v: oracle._ctx.sech(v) ** 2, 1, 1)
_tanh = np.frompyfunc(oracle._ctx.tanh, 1, 1)


def _apply(function, values):
    out = np.empty(np.shape(values), dtype=object)
    if out.size:
        out[...] = function(values)
    return out


def softcap(logits, cap, backend):
    """(x', slope): c tanh(x / c) and sech^2(x / c) of every logit, in the backend."""
    B = backend
    if B is MP:
        u = MP.array(logits) / MP.scalar(cap)
        return MP.scalar(cap) * _apply(_tanh, u), _apply(_sech, u)
    u = np.asarray(logits, dtype=np.float64) / cap
    q = np.exp(-2 * np.abs(u))
    return cap * np.tanh(u), 4 * q / (1 + q) ** 2


@dataclass
class Rows:
    """Exact softmax quantities of rows of exact logits (object or float64 arrays)."""
    backend: type
    x: np.ndarray           # the logits the softmax sees (x' with softcap)
    m: np.ndarray           # row maximum
    log_s: np.ndarray       # log1p(sum_{c != a} e_c)
    e: np.ndarray           # exp(x_c - m)
    p: np.ndarray
    log_p: np.ndarray


def capped_rows(x, backend):
    """Rows of exact logits x (the backend's array kind), without cancellation."""
    B = backend
    n_rows, n_classes = x.shape
    rows = np.arange(n_rows)
    as_float = np.asarray(_to_float(x), dtype=np.float64) if B is MP else x
    argmax = np.argmax(as_float, axis=1)
    m = x[rows, argmax]
    d = x - m[:, None]
    e = B.exp(d)
    others = np.empty(n_rows, dtype=B.dtype)
    for i in range(n_rows):
        others[i] = B.sum(np.concatenate([e[i, :argmax[i]], e[i, argmax[i] + 1:]]))
    log_s = np.empty(n_rows, dtype=B.dtype)
    log_s[:] = [B.scalar_log1p(v) for v in others]
    s = 1 + others
    return Rows(B, x, m, log_s, e, e / s[:, None], d - log_s[:, None])


_to_float = np.frompyfunc(float, 1, 1)


def _exact_logits(logits, softcap_value, backend):
    """(logits the softmax sees, slope or None) as exact arrays of the backend."""
    if softcap_value is None:
        return backend.array(logits), None
    return softcap(logits, softcap_value, backend)


def softmax_cross_entropy(logits, target, *, class_weight=None, ignore_index=None,
                          label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
                          backend=MP):
    """Exact cross-entropy with z-loss and soft-capping (API.md, "More losses").

    With x' the logits the softmax sees (capped or not), q the target
    distribution and w the class weights, for a row not ignored:

        loss = -sum_c w_c q_c log p_c + z lse^2,        lse = m + log_s
        g'   = (sum_c w_c q_c + 2 z lse) p - w q        (d loss / d x')
        grad = g' slope                                (slope = 1 without softcap)

    Scales: the loss against its cross-entropy part plus z |lse| max(|lse|,
    |m|, log_s) (lse may cancel); the gradient against the largest of its
    terms A p, 2 z |m| p, 2 z log_s p and w q, times the slope; and, for
    float64 with softcap, each plus the allowance of the module doc (for the
    gradient, a bound of it: slope_j p_j (|A + 2 z lse| (|x'_j| + sum_c p_c
    |x'_c|) + 2 z sum_c p_c |x'_c|), from d g'_j / d x'_c = (A + 2 z lse)
    p_j ([j == c] - p_c) + 2 z p_c p_j; the slope itself is computed from x,
    not from x').
    """
    B = backend
    n_rows, n_classes = np.shape(logits)
    target = np.asarray(target)
    x, slope = _exact_logits(logits, softcap, B)
    rows_ = capped_rows(x, B)
    eps = B.scalar(label_smoothing)
    z = B.scalar(z_loss)
    w_float = np.ones(n_classes) if class_weight is None else np.asarray(class_weight, float)
    w = B.array(w_float)
    if target.ndim == 1:
        keep = np.ones(n_rows, bool) if ignore_index is None else target != ignore_index
        q = B.array(_onehot(np.where(keep, target, -1), n_classes))
        row_factor = B.array(np.where(keep, w_float[np.where(keep, target, 0)], 0.0))
    else:
        keep = np.ones(n_rows, bool)
        q = B.array(target)
        row_factor = oracle._ones(B, n_rows)
    q = (1 - eps) * q + eps / n_classes
    wq = w[None, :] * q
    wq[~keep] = B.zero
    cross_entropy = _rows(B, wq * -rows_.log_p)
    a_sum = _rows(B, wq)
    lse = rows_.m + rows_.log_s
    lse_size = _maximum(_abs(rows_.m), _abs(rows_.log_s))
    kept = B.array(keep.astype(float))
    z_term = kept * z * lse * lse
    loss = cross_entropy + z_term
    loss_scale = cross_entropy + kept * z * _abs(lse) * _maximum(_abs(lse), lse_size)
    coefficient = a_sum + kept * 2 * z * lse
    g = coefficient[:, None] * rows_.p - wq
    terms = [a_sum[:, None] * rows_.p, (kept * 2 * z * _abs(rows_.m))[:, None] * rows_.p,
             (kept * 2 * z * _abs(rows_.log_s))[:, None] * rows_.p, wq]
    grad_scale = _maximum(*[_abs(t) for t in terms])
    grad = g
    if slope is not None:
        grad = g * slope
        grad_scale = grad_scale * slope
        if B is MP:
            size = _abs(x)
            mean_size = _rows(B, rows_.p * size)
            loss_scale = loss_scale + _rows(B, _abs(g) * size)
            grad_scale = grad_scale + slope * rows_.p * (
                _abs(coefficient)[:, None] * (size + mean_size[:, None])
                + (kept * 2 * z)[:, None] * mean_size[:, None])
    denominator = oracle._row_denominator(B, sample_weight, row_factor, keep)
    return Exact(loss, loss_scale, grad, grad_scale, denominator, B)


def softmax_focal_loss(logits, target, *, gamma=2.0, class_weight=None, ignore_index=None,
                       sample_weight=None, backend=MP):
    """Exact focal loss w_y (1 - p_y)^gamma (-log p_y) and its gradient.

    With P = p_y, q = 1 - P = sum_{c != y} e_c / s and ce = -log P:

        loss = w_y q^gamma ce
        grad = w_y F (p - onehot(y)),   F = q^gamma + gamma P q^(gamma - 1) ce

    (F = q^gamma when P = 0; every term of F is >= 0, and grad_y = -w_y F q):
    each value is measured against itself.  "mean" divides by sum_i s_i w_{y_i}
    over the rows not ignored.
    """
    B = backend
    n_rows, n_classes = np.shape(logits)
    labels = np.asarray(target)
    keep = np.ones(n_rows, bool) if ignore_index is None else labels != ignore_index
    y = np.where(keep, labels, 0)
    rows_ = capped_rows(B.array(logits), B)
    rows = np.arange(n_rows)
    w_float = np.ones(n_classes) if class_weight is None else np.asarray(class_weight, float)
    w_y = B.array(np.where(keep, w_float[y], 0.0))
    total = _rows(B, rows_.e)
    others = np.empty(n_rows, dtype=B.dtype)
    for i in range(n_rows):
        others[i] = B.sum(np.concatenate([rows_.e[i, :y[i]], rows_.e[i, y[i] + 1:]]))
    q = others / total
    big_p = rows_.p[rows, y]
    ce = -rows_.log_p[rows, y]
    g = B.scalar(gamma)
    q_gamma = _power(q, g, B)
    q_gamma_1 = np.empty(n_rows, dtype=B.dtype)
    for i in range(n_rows):
        q_gamma_1[i] = B.zero if big_p[i] == 0 or g == 0 else _power_scalar(q[i], g - 1, B)
    factor = q_gamma + g * big_p * q_gamma_1 * ce
    loss = w_y * q_gamma * ce
    slope = rows_.p.copy()
    slope[rows, y] = -q
    grad = (w_y * factor)[:, None] * slope
    denominator = oracle._row_denominator(B, sample_weight, w_y, keep)
    return Exact(loss, _abs(loss), grad, _abs(grad), denominator, B)


def _power_scalar(value, exponent, backend):
    if backend is MP:
        return oracle._ctx.power(value, exponent)
    return float(value) ** float(exponent)


def _power(values, exponent, backend):
    out = np.empty(np.shape(values), dtype=backend.dtype)
    out[:] = [_power_scalar(v, exponent, backend) for v in values]
    return out


FUNCTIONS = {"softmax_cross_entropy": softmax_cross_entropy,
             "softmax_focal_loss": softmax_focal_loss}


def exact_for(function, call, backend):
    """The :class:`Exact` of one adversarial.Call of ``function``."""
    return FUNCTIONS[function](*call.args, **call.params, sample_weight=call.sample_weight,
                               backend=backend)


__all__ = ["softcap", "capped_rows", "softmax_cross_entropy", "softmax_focal_loss",
           "exact_for", "mpmath"]
