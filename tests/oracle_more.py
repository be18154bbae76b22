"""Exact oracles of the losses beyond the seed (API.md "More losses").

The same two arithmetics and the same conventions as tests/oracle.py: ``MP``
(mpmath at 200 bits) for float64 results, ``F64`` (NumPy float64 on exact
float32 inputs, with no cancelling subtraction) for float32 results; each
function returns an ``oracle.Exact`` (per-element losses and the gradient,
each with the magnitude an error is measured against).  The formulas are
written without catastrophic cancellation wherever a textbook form has it:

* log cosh a (a = |r|) = log1p(expm1(a)^2 / (2 (1 + expm1(a)))) for a <= 1
  (cosh a - 1 without subtracting 1), a - log 2 + log1p(exp(-2a)) beyond;
  tanh a = -expm1(-2a) / (1 + exp(-2a)).
* the focal loss's 1 - p_t = t sigma(-x) + (1 - t) sigma(x), a sum of
  nonnegative terms, from e = exp(-|x|).

Scales: a value that is a sum of terms of either sign is measured against
the sum of its terms' magnitudes (the Poisson loss exp(x) - t x, the Gaussian
loss 0.5 (log v + r^2 / v), the gradients exp(x) - t, 1 - t / (x + eps),
0.5 (1 / v - r^2 / v^2), and the focal gradient); every other value against
itself.
"""
from __future__ import annotations

import math

import numpy as np

import oracle
from oracle import Exact, F64, MP, _abs

_ctx = oracle._ctx


def _mp_unary(function):
    ufunc = np.frompyfunc(function, 1, 1)

    def apply(a):
        out = np.empty(np.shape(a), dtype=object)
        if out.size:
            out[...] = ufunc(a)
        return out
    return apply


class _MPMore(MP):
    expm1 = staticmethod(_mp_unary(_ctx.expm1))
    power = staticmethod(np.frompyfunc(lambda q, g: q ** g if q != 0 or g != 0 else _ctx.mpf(1),
                                       2, 1))
    log_2pi = _ctx.log(2 * _ctx.pi)
    log2 = _ctx.log(2)


class _F64More(F64):
    @staticmethod
    def expm1(a):
        with np.errstate(over="ignore"):
            return np.expm1(a)

    @staticmethod
    def power(q, gamma):
        with np.errstate(divide="ignore", over="ignore", under="ignore"):
            return np.where(np.asarray(gamma) == 0, 1.0, np.power(q, gamma))

    log_2pi = math.log(2 * math.pi)
    log2 = math.log(2.0)


def backend_for(dtype):
    return _F64More if np.dtype(dtype) == np.float32 else _MPMore


def _select(condition, a, b):
    return np.where(np.asarray(condition, dtype=bool), a, b)


def _elementwise(B, loss, loss_scale, grad, grad_scale, sample_weight):
    row_size = 1 if loss.ndim == 1 else loss.shape[1]
    if sample_weight is None:
        denominator = B.scalar(loss.size)
    else:
        denominator = B.sum(B.array(sample_weight)) * row_size
    return Exact(loss, loss_scale, grad, grad_scale, denominator, B)


def _sign(r):
    return np.asarray(np.sign(np.asarray(r, dtype=np.float64)), dtype=np.float64)


# --- regression ------------------------------------------------------------------

def l1(pred, target, *, sample_weight=None, backend=MP):
    """Exact |r| and sign(r) (0 at r = 0)."""
    B = _more(backend)
    r = B.array(pred) - B.array(target)
    grad = B.array(_sign(np.asarray(pred, np.float64) - np.asarray(target, np.float64)))
    return _elementwise(B, _abs(r), _abs(r), grad, _abs(grad), sample_weight)


def smooth_l1(pred, target, *, beta=1.0, sample_weight=None, backend=MP):
    """Exact 0.5 r^2 / beta (|r| < beta) or |r| - beta / 2, and r / beta or sign(r)."""
    B = _more(backend)
    r = B.array(pred) - B.array(target)
    b = B.scalar(beta)
    a = _abs(r)
    inside = np.asarray(a < b, dtype=bool)
    safe_b = b if beta > 0 else B.one
    loss = _select(inside, r * r / (2 * safe_b), a - b / 2)
    sign = B.array(_sign(np.asarray(pred, np.float64) - np.asarray(target, np.float64)))
    grad = _select(inside, r / safe_b, sign)
    return _elementwise(B, loss, _abs(loss), grad, _abs(grad), sample_weight)


def log_cosh(pred, target, *, sample_weight=None, backend=MP):
    """Exact log cosh r and tanh r (module doc: no cancellation)."""
    B = _more(backend)
    r = B.array(pred) - B.array(target)
    a = _abs(r)
    near = np.asarray(a <= 1, dtype=bool)
    em1 = B.expm1(_select(near, a, B.zero))                 # expm1(a) where a <= 1
    e2 = B.exp(-2 * a)
    loss = _select(near, B.log1p(em1 * em1 / (2 * (1 + em1))),
                   a - B.log2 + B.log1p(e2))
    tanh_a = -B.expm1(-2 * a) / (1 + e2)
    negative = np.asarray(r < 0, dtype=bool)
    grad = _select(negative, -tanh_a, tanh_a)
    return _elementwise(B, loss, _abs(loss), grad, _abs(grad), sample_weight)


def pinball(pred, target, *, quantile=0.5, sample_weight=None, backend=MP):
    """Exact max(q r', (q - 1) r') and -q (r' >= 0) or 1 - q, r' = target - pred."""
    B = _more(backend)
    r = B.array(target) - B.array(pred)
    q = B.scalar(quantile)
    above = np.asarray(r >= 0, dtype=bool)
    loss = _select(above, q * r, (q - 1) * r)
    grad = _select(above, -q + 0 * r, (1 - q) + 0 * r)
    return _elementwise(B, loss, _abs(loss), grad, _abs(grad), sample_weight)


# --- counts ------------------------------------------------------------------------

def poisson_nll(pred, target, *, log_input=True, full=False, eps=1e-8, sample_weight=None,
                backend=MP):
    """Exact Poisson NLL (torch's formula; a zero target's term is 0)."""
    B = _more(backend)
    x, t = B.array(pred), B.array(target)
    zero_t = np.asarray(t == 0, dtype=bool)
    if log_input:
        rate = B.exp(x)
        tx = _select(zero_t, B.zero, t * x)
        loss, loss_scale = rate - tx, rate + _abs(tx)
        grad, grad_scale = rate - t, _oracle_max(rate, t)
    else:
        rate = x + B.scalar(eps)
        log_rate = B.log(rate)
        t_log = _select(zero_t, B.zero, t * log_rate)
        loss, loss_scale = x - t_log, _abs(x) + _abs(t_log)
        ratio = t / rate
        grad, grad_scale = 1 - ratio, _oracle_max(_abs(ratio), B.one + 0 * ratio)
    if full:
        big = np.asarray(t > 1, dtype=bool)
        safe = _select(big, t, B.one + 0 * t)
        log_t = B.log(safe)
        terms = [safe * log_t, -safe, (B.log_2pi + log_t) / 2]
        stirling = _select(big, terms[0] + terms[1] + terms[2], B.zero)
        loss = loss + stirling
        loss_scale = loss_scale + _select(big, sum(_abs(v) for v in terms), B.zero)
    return _elementwise(B, loss, loss_scale, grad, grad_scale, sample_weight)


def _oracle_max(a, b):
    return np.where(np.asarray(a > b, dtype=bool), a, b)


# --- binary classification -----------------------------------------------------------

def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, sample_weight=None,
                       backend=MP):
    """Exact torchvision focal loss a_t (1 - p_t)^gamma BCE and its gradient.

    grad = a_t q^gamma (d ce / dx + gamma (1 - 2t) ce sigma sigma' / q), measured
    against a_t q^gamma ((1 - t) sigma + t sigma' + |gamma (1 - 2t) ce sigma sigma' / q|).
    """
    B = _more(backend)
    x, t = B.array(logits), B.array(target)
    positive = np.asarray(x >= 0, dtype=bool)
    e = B.exp(-_abs(x))
    inv = 1 / (1 + e)
    log1p_e = B.log1p(e)
    sigma_pos = _select(positive, inv, e * inv)
    sigma_neg = _select(positive, e * inv, inv)
    softplus_pos = _select(positive, x, B.zero) + log1p_e
    softplus_neg = _select(positive, B.zero, -x) + log1p_e
    ce = t * softplus_neg + (1 - t) * softplus_pos
    n = _select(positive, (1 - t) + t * e, t + (1 - t) * e)
    q = n * inv
    power = B.power(q, B.scalar(gamma) + 0 * q)
    a_t = (B.scalar(alpha) * t + (1 - B.scalar(alpha)) * (1 - t)) if alpha >= 0 else B.one
    loss = a_t * ce * power
    # sigma sigma' / q = e inv / n (n = 0 only where e underflows for a hard target: 1)
    n_zero = np.asarray(n == 0, dtype=bool)
    s = _select(n_zero, B.one + 0 * n, e * inv / _select(n_zero, B.one + 0 * n, n))
    focus = B.scalar(gamma) * (1 - 2 * t) * ce * s
    first, second = (1 - t) * sigma_pos, t * sigma_neg
    grad = a_t * power * (first - second + focus)
    grad_scale = _abs(a_t * power) * (_abs(first) + _abs(second) + _abs(focus))
    return _elementwise(B, loss, _abs(loss), grad, grad_scale, sample_weight)


# --- heteroscedastic regression --------------------------------------------------------

def gaussian_nll(mean, target, var, *, full=False, eps=1e-6, dtype=np.float64,
                 sample_weight=None, backend=MP):
    """Exact Gaussian NLL; returns (Exact for the mean, (grad_var, grad_var_scale)).

    eps is taken in ``dtype`` (the computation dtype, as torch's clamp); var
    is broadcast to the mean's shape by torch's rules, and grad_var summed
    back exactly (oracle.reduce does not know it: see ``reduce_var``).
    """
    B = _more(backend)
    mean = np.asarray(mean)
    var = np.asarray(var, dtype=np.float64)
    shape = var.shape if var.shape != mean.shape[:-1] else var.shape + (1,)
    m, t = B.array(mean), B.array(target)
    v_in = B.array(np.broadcast_to(var.reshape(shape), mean.shape))
    eps_value = float(np.asarray(eps, dtype=dtype))
    clamp = np.asarray(np.broadcast_to(var.reshape(shape), mean.shape) < eps_value, dtype=bool)
    v = _select(clamp, B.scalar(eps_value) + 0 * v_in, v_in)
    r = m - t
    log_v = B.log(v)
    quad = r * r / v
    constant = B.log_2pi / 2 if full else B.zero
    loss = (log_v + quad) / 2 + constant
    loss_scale = (_abs(log_v) + quad) / 2 + _abs(constant)
    grad = r / v
    grad_var = (1 / v - quad / v) / 2
    grad_var_scale = (1 / v + quad / v) / 2
    exact = _elementwise(B, loss, loss_scale, grad, _abs(grad), sample_weight)
    return exact, (grad_var, grad_var_scale, shape, var.shape)


def reduce_var(exact, var_parts, reduction, sample_weight=None):
    """The exact grad_var of one reduction (weights and the "mean" divisor as for the
    mean's gradient), summed over the broadcast dimensions: (values, scales)."""
    B = exact.backend
    grad_var, scale, shape, var_shape = var_parts
    if sample_weight is not None:
        w = B.array(sample_weight)
        w = w.reshape(w.shape + (1,) * (grad_var.ndim - 1))
        grad_var, scale = grad_var * w, scale * _abs(w)
    if reduction == "mean":
        if exact.denominator == 0:
            grad_var, scale = grad_var * 0, scale * 0
        else:
            grad_var, scale = grad_var / exact.denominator, scale / exact.denominator
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and grad_var.shape[k] != 1)
    return _sum_axes(B, grad_var, axes, var_shape), _sum_axes(B, scale, axes, var_shape)


def _sum_axes(B, values, axes, var_shape):
    if not axes:
        return values.reshape(var_shape)
    moved = np.moveaxis(values, axes, range(len(axes)))
    flat = moved.reshape(int(np.prod([values.shape[k] for k in axes])), -1)
    sums = np.empty(flat.shape[1], dtype=B.dtype)
    for j in range(flat.shape[1]):
        sums[j] = B.sum(flat[:, j])
    return sums.reshape(var_shape)


def _more(backend):
    """The extended arithmetic of a backend given as oracle.MP or oracle.F64."""
    if backend in (MP, _MPMore):
        return _MPMore
    return _F64More


FUNCTIONS = ("l1", "smooth_l1", "log_cosh", "pinball", "poisson_nll", "sigmoid_focal_loss",
             "gaussian_nll")
