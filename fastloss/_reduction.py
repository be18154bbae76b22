"""Reductions: the one "mean" divisor, and how per-sample results become the returned ones.

Design: "sum" is sum_i s_i l_i and "mean" divides it by one divisor, defined
once here (:func:`mean_denominator`) for every loss and both faces:

* elementwise losses: K * sum_i s_i, so that without weights "mean" is the
  mean over all N * K elements, as in torch;
* losses averaged over rows (multiclass): sum_i s_i;
* class labels with class weights or ``ignore_index``: sum_i s_i w_{y_i}
  over the rows not ignored (torch's weighted mean).

s_i are the sample weights (1 without).  The sums are compensated, by the
compiled kernels (a plain or pairwise sum of many weights can be off by
several ulps, and every "mean" loss and gradient element inherits that
error).  A "mean" over nothing (a zero divisor) is 0.0 with an all-zero
gradient, never NaN.

The fast faces divide the kernel's total by the divisor and scale the
gradient inside the kernel; :func:`reduce_numpy` is the NumPy reference's
version of the same steps.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastloss._checks import Prepared, PreparedMulticlass, check_finite
from fastloss import _dispatch
from fastloss._results import LossGrad, LossGradHess

_NO_WEIGHT = _dispatch.NO_WEIGHT
_weight_sum = _dispatch.multiclass_kernels.weight_sum
_label_weight_sum = _dispatch.multiclass_kernels.label_weight_sum


def mean_denominator(n_rows: int, row_size: int = 1, sample_weight: np.ndarray | None = None,
                     labels: np.ndarray | None = None, class_weight: np.ndarray | None = None,
                     ignore_index: int | None = None) -> float:
    """The "mean" divisor: row_size * sum_i s_i, or with ``labels`` sum_i s_i w_{y_i}
    over the rows whose label is not ``ignore_index`` (see the module docstring)."""
    if labels is not None and (class_weight is not None or ignore_index is not None):
        return _label_weight_sum(
            labels, _NO_WEIGHT if class_weight is None else class_weight,
            _NO_WEIGHT if sample_weight is None else sample_weight,
            ignore_index is not None, 0 if ignore_index is None else ignore_index)
    if sample_weight is None:
        return float(n_rows * row_size)
    return _weight_sum(sample_weight) * row_size


def settle_weights(prep: Prepared | PreparedMulticlass, value: float) -> None:
    """After a kernel call or a "mean" divisor: raise if the sample weights are not finite.

    When the checks of the sample weights were deferred (``defer_weight_check``),
    a NaN or infinite weight shows as a non-finite total (w * loss, or the
    weights' sum); only then are the weights scanned, to name the first bad one.
    A NaN prediction also makes the total NaN: the scan then finds nothing.
    """
    if prep.weight_unchecked and not math.isfinite(value):
        assert prep.weight is not None
        check_finite(prep.weight, "sample_weight")


def empty_mean(prep: Prepared | PreparedMulticlass) -> LossGrad | LossGradHess:
    """A "mean" over nothing: 0 with an all-zero gradient (and Hessian)."""
    if not prep.grad:
        return LossGrad(0.0, None)
    grad = prep.out if prep.out is not None else np.empty(prep.shape, prep.dtype)
    grad.fill(0)
    if prep.hess:
        return LossGradHess(0.0, grad, np.zeros(prep.shape, prep.dtype))
    return LossGrad(0.0, grad)


def _per_row(values: Any, weight: np.ndarray) -> Any:
    """values * w_i, row i of values (N,) or (N, K) multiplied by w_i."""
    return values * (weight if values.ndim == 1 else weight[:, None])


def reduce_numpy(prep: Prepared | PreparedMulticlass, loss: np.ndarray, grad: Any,
                 denominator: float | None = None, hess: Any = None,
                 outs: tuple[np.ndarray | None, ...] | None = None) -> LossGrad | LossGradHess:
    """Apply sample weights and the reduction to per-sample losses and gradients (in NumPy).

    ``loss`` has the shape of ``prep.pred`` (elementwise losses) or (N,) (one
    loss per row); ``grad`` is the derivative of each (unweighted) loss with
    respect to pred, of pred's shape, or a tuple of such derivatives, one per
    differentiable input (then ``outs`` holds their ``out`` arrays);
    ``hess`` (used when ``prep.hess``) the second derivatives d^2 loss /
    d pred_i^2 of pred's shape.  ``denominator`` overrides the "mean" divisor
    of :func:`mean_denominator` with the sample weights.
    """
    dtype, reduction = prep.dtype, prep.reduction
    several = isinstance(grad, tuple)
    grads = grad if several else (grad,)
    if outs is None:
        outs = (prep.out,)
    if prep.weight is not None:
        loss = _per_row(loss, prep.weight)
        grads = tuple(_per_row(g, prep.weight) for g in grads)
        if prep.hess:
            hess = _per_row(hess, prep.weight)
    value: float | np.ndarray
    if reduction == "none":
        with np.errstate(over="ignore"):    # a loss beyond float32's range is stored as inf
            value = loss.astype(dtype)
    else:
        value = float(np.sum(loss, dtype=np.float64))
        if reduction == "mean":
            if denominator is None:
                row_size = 1 if loss.ndim == 1 else loss.shape[1]
                denominator = mean_denominator(prep.shape[0], row_size, prep.weight)
            if denominator == 0:        # a mean over nothing is 0, with a zero gradient
                value = 0.0
                grads = tuple(np.zeros_like(g) for g in grads)
                if prep.hess:
                    hess = np.zeros_like(hess)
            else:
                value = value / denominator
                grads = tuple(g / denominator for g in grads)
                if prep.hess:
                    hess = hess / denominator
    if not prep.grad:
        return LossGrad(value, None)
    results = []
    for g, out in zip(grads, outs):
        g = np.asarray(g).astype(dtype, copy=False)
        if out is not None:
            np.copyto(out, g)
            g = out
        results.append(g)
    grad_value: Any = tuple(results) if several else results[0]
    if prep.hess:
        return LossGradHess(value, grad_value, np.asarray(hess).astype(dtype))  # always a copy
    return LossGrad(value, grad_value)
