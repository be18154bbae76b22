"""fastloss.reference: every loss of fastloss in plain, readable NumPy.

Same names, signatures, semantics, errors and docstrings as the fast
functions in ``fastloss``: it is the test oracle, the benchmark baseline and
a fallback anyone can read.  ``import fastloss.reference as fl`` and
``import fastloss as fl`` are interchangeable.

Design: the names come from the registry (:mod:`fastloss._registry`).  An
elementwise loss has no hand-written twin: its declaration carries the NumPy
formula of one element, and :func:`_elementwise` applies it between the
shared argument checks and the shared reduction (the same rules as the fast
call path, in NumPy).  The multiclass losses, whose row maths is not
generic, are written out below; each takes its docstring and type hints from
its fast twin (``twin_of``), which also checks that the signatures agree.

The per-element maths is computed in the computation dtype (float32 or
float64); sums are accumulated in float64.  The multiclass rows are computed
in float64, as in the kernels, and cast to the computation dtype at the end.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import fastloss
from fastloss._checks import (GAMMA, check_cross_entropy_extras, prepare_elementwise,
                              prepare_further_inputs, prepare_multiclass, prepare_rows,
                              refuse_hess)
from fastloss._linear_validation import LinearCrossEntropyGrad, prepare_linear
from fastloss._multiclass_losses import MULTICLASS_HINGE as _MULTICLASS_HINGE
from fastloss._numpy_maths import xmul as _xmul
from fastloss._reduction import mean_denominator, reduce_numpy
from fastloss._registry import Loss, derived_twin, losses, public_names, twin_of
from fastloss._results import LossGrad, LossGradHess

__all__ = ["LossGrad", "LossGradHess", *public_names(), "LinearCrossEntropyGrad"]


# --- elementwise: derived from the declarations ---------------------------------------

def _elementwise(spec: Loss, inputs: tuple[Any, ...], params: tuple[Any, ...],
                 sample_weight: Any, reduction: Any, grad: Any, hess: Any,
                 outs: tuple[Any, ...], n_threads: Any) -> LossGrad | LossGradHess:
    """The NumPy twin of an elementwise loss: check, apply the declared formula, reduce."""
    if not spec.hess and hess is not False:
        refuse_hess(hess, spec.name)
    values = spec.check_scalars(params)
    prep = prepare_elementwise(inputs[0], inputs[1], sample_weight, reduction, grad, outs[0],
                               n_threads, pred_name=spec.inputs[0], hess=hess)
    further, further_outs, shapes = prepare_further_inputs(
        prep, spec.inputs, spec.gradients, inputs[2:], outs[1:], spec.broadcast_inputs)
    if prep.pred.ndim not in spec.ndims:
        raise ValueError(spec.shape_error.format(shape=prep.shape))
    target = spec.target.check(prep.target, "target")
    for name, value in zip(spec.inputs[2:], further):
        if name in spec.input_rules:
            spec.input_rules[name].check(value.reshape(shapes[0]), name)
    if spec.check_shaped is not None:
        values = spec.check_shaped(values, prep.shape)
    assert spec.formula is not None
    loss, grad_value, curvature = spec.formula(prep.pred, target, *further, *values,
                                               hess=prep.hess)
    if not further_outs:
        return reduce_numpy(prep, loss, grad_value, hess=curvature)
    # the gradients of broadcast inputs: summed over the broadcast dimensions
    # (after the weights and the "mean" divisor, as the kernels do)
    result = reduce_numpy(prep, loss, grad_value, hess=curvature,
                          outs=(prep.out,) + (None,) * len(further_outs))
    if result.grad is None:
        return result
    grads = [result.grad[0]]
    for name, g, out, shape in zip(spec.gradients[1:], result.grad[1:], outs[1:], shapes):
        broadcast = further[spec.inputs.index(name) - 2].shape
        if broadcast != g.shape:
            axes = tuple(k for k, n in enumerate(broadcast) if n != g.shape[k])
            g = np.sum(g, axis=axes, dtype=np.float64, keepdims=True).astype(prep.dtype)
        g = g.reshape(shape)
        if out is not None:             # (checked by prepare_further_inputs)
            np.copyto(out, g)
            g = out
        grads.append(g)
    # (a tuple of gradients: LossGrad types the usual single one)
    return result._replace(grad=tuple(grads))  # type: ignore[arg-type]


for _spec in losses("elementwise"):
    globals()[_spec.name] = derived_twin(_spec, _elementwise, __name__)
del _spec

if TYPE_CHECKING:   # the twins made above have the types of their fast functions
    from fastloss._elementwise_losses import *  # noqa: F401,F403


# --- multiclass ------------------------------------------------------------
#
# Every multiclass function works on the rows of an (N, C) array.  The row
# maths follows one rule, shared with the fast kernels:
#
#   m = max_c x_c, k = the first class where x_k = m,
#   e_c = exp(x_c - m), S = sum_{c != k} e_c,
#   log-sum-exp = m + log1p(S)                 (Blanchard, Higham & Higham 2021)
#   p_c = e_c / (1 + S),  log p_c = (x_c - m) - log1p(S).
#
# Infinite logits: if m is infinite (+inf, or -inf for a row of -inf only),
# the classes at m share the probability equally (x_c - m counts as 0 there)
# and every other class has probability 0.  A -inf logit in a row with a
# finite maximum has probability 0.  NaN anywhere in a row makes that row's
# results NaN.
#
# References:
#   P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the
#   log-sum-exp and softmax functions", IMA J. Numer. Anal. 41 (2021).
#   M. Maechler, "Accurately computing log(1 - exp(-|a|))", Rmpfr vignette (2012).


class _RowStats:
    """The shifted logits of each row and the sums the row maths is built on.

    As in the kernels, each row is computed in float64 from the stored values
    (so float32 rows like [3e38, -3e38] give finite losses); the public
    functions cast their results to the computation dtype.
    """

    def __init__(self, x):
        x = x.astype(np.float64)
        n_rows, n_classes = x.shape
        self.n_rows, self.n_classes = n_rows, n_classes
        self.rows = np.arange(n_rows)
        if n_classes == 0:
            self.max = np.full(n_rows, -np.inf)
            self.shifted = x.copy()
            self.argmax = np.zeros(n_rows, dtype=np.intp)
            self.exp = x.copy()
            self.others = np.zeros(n_rows)
            self.log1p_others = np.zeros(n_rows)
            return
        m = np.max(x, axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):
            self.shifted = np.where(x == m, 0, x - m)
        self.max = m[:, 0]
        self.argmax = np.argmax(x, axis=1)
        self.exp = np.exp(self.shifted)
        exp_others = self.exp.copy()
        exp_others[self.rows, self.argmax] = 0
        # S; a NaN maximum makes it NaN, also in a row of one class
        self.others = np.where(np.isnan(self.max), np.nan, np.sum(exp_others, axis=1))
        self.log1p_others = np.log1p(self.others)

    def logsumexp(self):
        with np.errstate(invalid="ignore"):
            return self.max + self.log1p_others

    def log_softmax(self):
        return self.shifted - self.log1p_others[:, None]

    def softmax(self):
        return self.exp / (1 + self.others[:, None])

    def label_gradient(self, labels):
        """softmax - onehot(labels), with p_y - 1 = -S / (1 + S) where y is the maximum.

        p_y - 1 = -(sum_{c != y} e_c) / (1 + S) keeps every digit when p_y is
        close to 1; when y is not the first maximum p_y <= 1/2 and p_y - 1 is
        exact enough as written.
        """
        grad = self.softmax()
        grad[self.rows, labels] -= 1
        at_max = labels == self.argmax
        grad[self.rows[at_max], labels[at_max]] = (-self.others / (1 + self.others))[at_max]
        return grad

    def target_gradient(self, a):
        """(sum_c a_c) p - a for non-negative class coefficients a (N, C).

        At the first maximum k, A p_k - a_k = (sum_{c != k} a_c) - A S / (1 + S),
        which keeps its digits when p_k is close to 1 and a_k close to A.
        """
        a = a.astype(np.float64)
        a_sum = np.sum(a, axis=1)
        grad = a_sum[:, None] * self.softmax() - a
        if self.n_classes > 0:
            a_others = a.copy()
            a_others[self.rows, self.argmax] = 0
            grad[self.rows, self.argmax] = (np.sum(a_others, axis=1)
                                            - a_sum * self.others / (1 + self.others))
        return grad

    def hessian_diagonal(self, a_sum):
        """A p_c (1 - p_c) of each row, A = ``a_sum`` (N,): the diagonal of A (diag(p) - p p^T).

        At the first maximum k, p_k (1 - p_k) = S / (1 + S)^2, which keeps its
        digits when p_k is close to 1; elsewhere p_c <= 1/2.
        """
        p = self.softmax()
        curvature = p * (1 - p)
        if self.n_classes > 0:
            curvature[self.rows, self.argmax] = self.others / (1 + self.others) ** 2
        return np.asarray(a_sum, dtype=np.float64)[:, None] * curvature

    def log_others(self):
        """log S = log(sum_{c != k} e_c) without underflow (the log-sum-exp of the others)."""
        if self.n_classes < 2:
            return np.full(self.n_rows, -np.inf)
        others = self.shifted.copy()
        others[self.rows, self.argmax] = -np.inf
        second = np.max(others, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shifted = np.where(others == second, 0, others - second)
            return second[:, 0] + np.log(np.sum(np.exp(shifted), axis=1))


def _log1mexp(a):
    """log(1 - exp(a)) for a <= 0, switching at -log 2 (Maechler 2012)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > -np.log(2), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def _xlogx(t):
    """t log t with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, t * np.log(t))


def _softcap(x, cap):
    """cap tanh(x / cap) in float64, and its derivative sech^2(x / cap) = 4 q / (1 + q)^2
    with q = exp(-2 |x| / cap) (1 - tanh^2 would cancel where a logit saturates)."""
    u = x.astype(np.float64) / cap
    q = np.exp(-2 * np.abs(u))
    return cap * np.tanh(u), 4 * q / (1 + q) ** 2


@twin_of(fastloss.softmax_cross_entropy)
def softmax_cross_entropy(logits, target, *, class_weight=None, ignore_index=None,
                          label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
                          reduction="mean", grad=True, hess=False, out=None, n_threads=None):
    z_loss, softcap = check_cross_entropy_extras(z_loss, softcap, hess)
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              class_weight=class_weight, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, hess=hess)
    x, eps = prep.pred, prep.label_smoothing
    n_rows, n_classes = x.shape
    slope = None
    if softcap is not None:
        x, slope = _softcap(x, softcap)
    stats = _RowStats(x)
    w = np.ones(n_classes) if prep.class_weight is None else prep.class_weight
    log_p = stats.log_softmax()
    denominator = mean_denominator(n_rows, 1, prep.weight,
                                   labels=prep.target if prep.has_labels else None,
                                   class_weight=prep.class_weight,
                                   ignore_index=prep.ignore_index)
    if prep.has_labels:
        y = prep.target
        kept = np.ones(n_rows, bool) if prep.ignore_index is None else y != prep.ignore_index
        y = np.where(kept, y, 0)
        loss = np.zeros(n_rows)
        grad_value = np.zeros(x.shape)
        a_sum = np.zeros(n_rows)
        kept_rows = kept
        if n_classes > 0:
            w_y = w[y]
            loss = _xmul((1 - eps) * w_y, -log_p[stats.rows, y])
            grad_value = (1 - eps) * w_y[:, None] * stats.label_gradient(y)
            if eps > 0:
                loss = loss + eps / n_classes * -np.sum(_xmul(w, log_p), axis=1)
                grad_value += eps / n_classes * (np.sum(w) * stats.softmax() - w)
            loss = np.where(kept, loss, 0)
            grad_value = np.where(kept[:, None], grad_value, 0)
            a_sum = np.where(kept, (1 - eps) * w_y + eps / n_classes * np.sum(w), 0)
    else:
        kept_rows = np.ones(n_rows, bool)
        t = prep.target.astype(np.float64)
        if eps > 0:
            t = (1 - eps) * t + eps / n_classes
        weighted_t = w * t
        loss = -np.sum(_xmul(weighted_t, log_p), axis=1)
        grad_value = stats.target_gradient(weighted_t)
        a_sum = np.sum(weighted_t, axis=1)
    if z_loss != 0.0 and n_classes > 0:
        lse = stats.logsumexp()
        with np.errstate(invalid="ignore"):
            loss = np.where(kept_rows, loss + z_loss * lse ** 2, 0.0)
            grad_value = np.where(kept_rows[:, None],
                                  grad_value + 2 * z_loss * lse[:, None] * stats.softmax(), 0.0)
    if slope is not None:
        grad_value = np.where(kept_rows[:, None], grad_value * slope, 0.0)
    curvature = None
    if prep.hess:       # an ignored row has hess 0, also where its logits are NaN
        curvature = np.where(kept_rows[:, None], stats.hessian_diagonal(a_sum), 0.0)
    return reduce_numpy(prep, loss, grad_value, denominator, hess=curvature)


@twin_of(fastloss.softmax_focal_loss)
def softmax_focal_loss(logits, target, *, gamma=2.0, class_weight=None, ignore_index=None,
                       sample_weight=None, reduction="mean", grad=True, hess=False, out=None,
                       n_threads=None):
    gamma = GAMMA.check(gamma)
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", class_weight=class_weight,
                              ignore_index=ignore_index, hess=hess)
    x = prep.pred
    n_rows, n_classes = x.shape
    y = prep.target
    kept = np.ones(n_rows, bool) if prep.ignore_index is None else y != prep.ignore_index
    y = np.where(kept, y, 0)
    loss, grad_value = np.zeros(n_rows), np.zeros(x.shape)
    curvature = np.zeros(x.shape) if prep.hess else None
    if n_classes > 0:
        stats = _RowStats(x)
        w = np.ones(n_classes) if prep.class_weight is None else prep.class_weight
        w_y = w[y]
        rows = stats.rows
        ce = -stats.log_softmax()[rows, y]
        big_p = stats.softmax()[rows, y]
        at_max = y == stats.argmax
        q = np.where(at_max, stats.others / (1 + stats.others), 1 - big_p)
        with np.errstate(divide="ignore", invalid="ignore"):
            q_gamma = q ** gamma
            r = np.where(q > 0, ce / q, 1.0)
            p_r = _xmul(big_p, r)
            factor = w_y * q_gamma * (1 + gamma * p_r)
            loss = np.where(kept, _xmul(w_y, _xmul(q_gamma, ce)), 0.0)
            slope = stats.label_gradient(y)                         # p - onehot(y)
            grad_value = np.where(kept[:, None], factor[:, None] * slope, 0.0)
            if prep.hess:
                eta = np.where((gamma != 0) & (q > 0), w_y * _xmul(
                    big_p, gamma * q ** (gamma - 1) * (r * q - 2 - (gamma - 1) * p_r)), 0.0)
                curvature = np.where(kept[:, None], stats.hessian_diagonal(factor)
                                     - eta[:, None] * slope ** 2, 0.0)
    denominator = mean_denominator(n_rows, 1, prep.weight, labels=prep.target,
                                   class_weight=prep.class_weight,
                                   ignore_index=prep.ignore_index)
    return reduce_numpy(prep, loss, grad_value, denominator, hess=curvature)


def _cross_odds(x, stats):
    """p_c r_k = p_c p_k / (1 - p_k) = e_c / (T S) of every class c, k the first maximum.

    Rescaled by the largest other logit m2: e_c / S = exp(x_c - m2) / S' with
    S' = sum_{j != k} exp(x_j - m2) >= 1, so neither e_c nor S underflows, and
    log S' is never added to a huge m2 - m (the log-domain exp(log p_c - log S)
    loses it: for the float32 row [3e38, 0, 0] it gives 1 instead of 1/2).
    """
    others = x.astype(np.float64)
    others[stats.rows, stats.argmax] = -np.inf
    second = np.max(others, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        rescaled = np.exp(np.where(others == second, 0.0, others - second))
        rescaled[stats.rows, stats.argmax] = 0.0
        return rescaled / (np.sum(rescaled, axis=1, keepdims=True)
                           * (1 + stats.others[:, None]))


@twin_of(fastloss.softmax_binary_cross_entropy)
def softmax_binary_cross_entropy(logits, target, *, sample_weight=None, reduction="mean",
                                 grad=True, out=None, n_threads=None):
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads)
    x = prep.pred
    n_rows, n_classes = x.shape
    if prep.has_labels:
        t = np.zeros(x.shape)
        if n_classes > 0:
            t[np.arange(n_rows), prep.target] = 1
    else:
        t = prep.target.astype(np.float64)
    stats = _RowStats(x)
    log_p = stats.log_softmax()
    rows, k = stats.rows, stats.argmax
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_1mp = _log1mexp(np.minimum(log_p, 0))
        if n_classes > 0:
            log_1mp[rows, k] = stats.log_others() - stats.log1p_others
        loss = -np.sum(_xmul(t, log_p) + _xmul(1 - t, log_1mp), axis=1)
        p = np.exp(log_p)
        odds = np.exp(log_p - log_1mp)
        odds[rows, k] = 0
        t_sum = np.sum(t, axis=1, keepdims=True)
        b_rest = np.sum((1 - t) * odds, axis=1, keepdims=True)      # B without class k
        grad_value = p * t_sum - t + (1 - t) * odds - p * b_rest
        if n_classes > 0:
            # p_c (1 - t_k) r_k for c != k, rescaled: finite and accurate when p_k -> 1.
            cross = np.where(log_p == -np.inf, 0.0, _cross_odds(x, stats))
            cross *= (1 - t[rows, k])[:, None]
            cross[rows, k] = 0
            grad_value -= cross
            # at k itself (1 - t_k) r_k - p_k (1 - t_k) r_k = (1 - t_k) p_k
            grad_value[rows, k] += (1 - t[rows, k]) * p[rows, k]
    return reduce_numpy(prep, loss, grad_value)


@twin_of(fastloss.kl_divergence)
def kl_divergence(logits, target, *, sample_weight=None, reduction="mean", grad=True,
                  hess=False, out=None, n_threads=None):
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="probabilities", hess=hess)
    t = prep.target.astype(np.float64)
    stats = _RowStats(prep.pred)
    loss = np.sum(_xlogx(t) - _xmul(t, stats.log_softmax()), axis=1)
    grad_value = stats.target_gradient(t)
    curvature = stats.hessian_diagonal(np.sum(t, axis=1)) if prep.hess else None
    return reduce_numpy(prep, loss, grad_value, hess=curvature)


@twin_of(fastloss.multiclass_hinge)
def multiclass_hinge(scores, target, *, margin=1.0, kind="weston_watkins", squared=False,
                     sample_weight=None, reduction="mean", grad=True, out=None,
                     n_threads=None):
    margin, kind, squared = _MULTICLASS_HINGE.check_scalars((margin, kind, squared))
    prep = prepare_multiclass(scores, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", pred_name="scores")
    s, y = prep.pred.astype(np.float64), prep.target
    n_rows, n_classes = s.shape
    rows = np.arange(n_rows)
    power = 2 if squared else 1
    loss, grad_value = np.zeros(n_rows), np.zeros(s.shape)
    if n_classes > 0:
        s_y = s[rows, y]
        if kind == "weston_watkins":
            z = margin + s - s_y[:, None]
            z[rows, y] = 0                     # the true class has no hinge
        else:
            others = s.copy()
            others[rows, y] = -np.inf
            best = np.argmax(others, axis=1)   # the first maximum (or the first NaN)
            # when every wrong class is at -inf, argmax may return y: take the first j != y
            best = np.where(best == y, np.where(y == 0, 1, 0), best)
            z = np.zeros(s.shape)
            if n_classes > 1:                  # else no wrong class, no hinge
                z[rows, best] = margin + others[rows, best] - s_y
        with np.errstate(invalid="ignore"):
            active = np.maximum(z, 0)          # keeps NaN
            loss = np.sum(active ** power, axis=1)
            slope = np.where(np.isnan(z), z, np.where(z > 0, power * active ** (power - 1), 0))
        grad_value = slope
        grad_value[rows, y] = -np.sum(slope, axis=1)
    return reduce_numpy(prep, loss, grad_value)


# --- row-wise utilities ------------------------------------------------------

def _rows_result(values, out):
    if out is None:
        return values
    np.copyto(out, values)
    return out


@twin_of(fastloss.logsumexp)
def logsumexp(x, *, out=None, n_threads=None):
    arr, out, _ = prepare_rows(x, out, n_threads, out_ndim=1)
    return _rows_result(_RowStats(arr).logsumexp().astype(arr.dtype), out)


@twin_of(fastloss.softmax)
def softmax(x, *, out=None, n_threads=None):
    arr, out, _ = prepare_rows(x, out, n_threads, out_ndim=2)
    return _rows_result(_RowStats(arr).softmax().astype(arr.dtype), out)


@twin_of(fastloss.log_softmax)
def log_softmax(x, *, out=None, n_threads=None):
    arr, out, _ = prepare_rows(x, out, n_threads, out_ndim=2)
    return _rows_result(_RowStats(arr).log_softmax().astype(arr.dtype), out)


# --- fused linear cross-entropy ---------------------------------------------------

@twin_of(fastloss.linear_cross_entropy)
def linear_cross_entropy(hidden, weight, target, *, bias=None, class_weight=None,
                         ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None,
                         sample_weight=None, reduction="mean", grad=True, chunk_rows=None,
                         n_threads=None):
    prep = prepare_linear(hidden, weight, target, bias, class_weight, ignore_index,
                          label_smoothing, z_loss, softcap, sample_weight, reduction, grad,
                          chunk_rows, n_threads)
    logits = prep.hidden @ prep.weight.T
    if prep.bias is not None:
        logits += prep.bias
    loss, g = softmax_cross_entropy(logits, prep.labels, class_weight=prep.class_weight,
                                    ignore_index=prep.ignore_index,
                                    label_smoothing=prep.label_smoothing,
                                    z_loss=prep.z_loss, softcap=prep.softcap,
                                    sample_weight=prep.sample_weight, reduction=reduction,
                                    grad=prep.grad)
    if not prep.grad:
        return LinearCrossEntropyGrad(loss, None, None, None)
    grad_bias = None
    if prep.bias is not None:
        grad_bias = np.sum(g, axis=0, dtype=np.float64).astype(prep.dtype)
    return LinearCrossEntropyGrad(loss, g @ prep.weight, g.T @ prep.hidden, grad_bias)
