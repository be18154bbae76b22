"""The call path of the multiclass losses and row utilities: one fused kernel call, the result.

Design: the public functions (:mod:`fastloss._multiclass_losses`) check their
arguments (:func:`fastloss._checks.prepare_multiclass`) and compute the
"mean" divisor (:func:`fastloss._reduction.mean_denominator`); :func:`run`
then allocates the outputs, calls the fused kernel once
(:func:`_call_kernel`, the only function that knows the kernels' argument
lists), raises the target rule's error if the kernel reported a bad
probability target, settles deferred weight checks, and returns
``LossGrad`` or ``LossGradHess``.  :func:`row_utility` does the same for
logsumexp, softmax and log_softmax.
"""
from __future__ import annotations

from typing import Any, Callable, NoReturn

import numpy as np

from fastloss import _dispatch
from fastloss._checks import PreparedMulticlass, prepare_rows
from fastloss._fastpath import bind_multiclass, bind_multiclass_entries, run_multiclass
from fastloss._reduction import empty_mean, settle_weights
from fastloss._targets import check_label_range
from fastloss._registry import Loss
from fastloss._results import LossGrad, LossGradHess

_KERNELS = _dispatch.specialisations(_dispatch.multiclass_kernels)


def raise_bad_labels(labels: np.ndarray, n_classes: int, ignore_index: int | None) -> NoReturn:
    """The error of the labels a kernel rejected in its pass: the ValueError naming the
    first one outside [0, n_classes) and not ``ignore_index``."""
    check_label_range(labels, n_classes, ignore_index)
    raise AssertionError("targets accepted by the check were rejected by the kernel")


bind_multiclass(_KERNELS, raise_bad_labels)
bind_multiclass_entries(_dispatch.multiclass_kernels.ENTRIES)

fast_call: Callable[[Loss, Any, Any, tuple[Any, ...], Any, Any, Any, Any, Any, Any],
                    LossGrad | None] = run_multiclass
"""The compiled path of a multiclass loss's call with class labels (see
:mod:`fastloss._fastpath`): ``fast_call(spec, logits, target, params, sample_weight,
reduction, grad, hess, out, n_threads)`` returns the result, or None for every call
it leaves to the public function's own checks and :func:`run`."""


def run(spec: Loss, prep: PreparedMulticlass, denominator: float,
        options: dict[str, Any] = {}) -> LossGrad | LossGradHess:  # noqa: B006 (read only)
    """Run the kernel of the multiclass loss ``spec`` and apply the reduction.

    ``denominator`` is the "mean" divisor; the loss parameters are those of
    ``prep`` (class_weight, ignore_index, label_smoothing) and ``options``
    (the other declared parameters, checked, by name).
    """
    dtype, shape = prep.dtype, prep.shape
    reduction = prep.reduction
    grad_scale = 1.0
    if reduction == "mean":
        settle_weights(prep, denominator)
        if denominator == 0:            # a mean over nothing: 0 and a zero gradient
            return empty_mean(prep)
        grad_scale = 1.0 / denominator
    loss_out = np.zeros(shape[0], dtype) if reduction == "none" else None
    grad_out = hess_out = None
    if prep.grad:
        grad_out = prep.out if prep.out is not None else np.empty(shape, dtype)
        if shape[1] == 0:
            grad_out.fill(0)
    if prep.hess:
        hess_out = np.empty(shape, dtype)
    total, bad_targets = _call_kernel(spec.kernel, prep.pred, prep, options, loss_out,
                                      grad_out, hess_out, grad_scale, prep.n_threads)
    if bad_targets:
        # raise the error naming the value: a label out of range (the kernel checks
        # them when prepare_multiclass deferred it), or a bad probability
        if prep.has_labels:
            raise_bad_labels(prep.target, shape[1], prep.ignore_index)
        spec.target.check(prep.target, "target")
        raise AssertionError("targets accepted by the check were rejected by the kernel")
    settle_weights(prep, total)
    if reduction == "none":
        loss: Any = loss_out
    elif reduction == "mean":
        loss = total / denominator
    else:
        loss = total
    if prep.hess:
        return LossGradHess(loss, grad_out, hess_out)  # type: ignore[arg-type]
    return LossGrad(loss, grad_out)


def row_utility(kernel: str, x: Any, out: Any, n_threads: Any, out_ndim: int) -> np.ndarray:
    """logsumexp ((N,) result, ``out_ndim`` 1), softmax or log_softmax ((N, C) result)."""
    arr, out, threads = prepare_rows(x, out, n_threads, out_ndim=out_ndim)
    if out_ndim == 1:
        result = out if out is not None else np.empty(arr.shape[0], arr.dtype)
        if arr.shape[1] == 0:
            result.fill(-np.inf)            # the log of an empty sum
            return result
        _call_kernel(kernel, arr, None, {}, result, None, None, 1.0, threads)
        return result
    result = out if out is not None else np.empty(arr.shape, arr.dtype)
    _call_kernel(kernel, arr, None, {}, None, result, None, 1.0, threads)
    return result


# --- the kernel calls: the only code that knows the kernels' argument lists ------------

def _call_kernel(kernel: str, x: np.ndarray, prep: PreparedMulticlass | None,
                 options: dict[str, Any], loss_out: np.ndarray | None,
                 grad_out: np.ndarray | None, hess_out: np.ndarray | None, grad_scale: float,
                 n_threads: int) -> tuple[float, bool]:
    """One call of a fused multiclass kernel on x (N, C): returns (the float64 sum of
    s_i loss_i, whether a probability target was bad).

    ``prep`` holds the targets, sample weights and the cross-entropy's options
    (None for a row utility); ``options`` the other declared parameters by
    name (z_loss, softcap; gamma; the hinge's margin, kind and squared).
    Each kernel takes its own arguments (see ``_multiclass_kernels.pyx.tp``);
    None stands for an absent array.
    """
    call = _KERNELS[kernel][x.dtype]
    if prep is None:                    # a row utility writes one output
        call(x, grad_out if loss_out is None else loss_out, n_threads)
        return 0.0, False
    labels = prep.target if prep.has_labels else None
    target = None if prep.has_labels else prep.target
    weight = prep.weight
    if kernel == "softmax_cross_entropy":
        softcap = options.get("softcap")
        return call(x, target, labels, weight, prep.class_weight, prep.label_smoothing,
                    prep.ignore_index, options.get("z_loss", 0.0),
                    0.0 if softcap is None else softcap,
                    loss_out, grad_out, hess_out, grad_scale, n_threads)
    if kernel == "softmax_focal_loss":
        return call(x, labels, weight, prep.class_weight, options["gamma"], prep.ignore_index,
                    loss_out, grad_out, hess_out, grad_scale, n_threads), False
    if kernel == "softmax_binary_cross_entropy":
        return call(x, target, labels, weight, loss_out, grad_out, grad_scale, n_threads)
    if kernel == "kl_divergence":
        return call(x, target, weight, loss_out, grad_out, hess_out, grad_scale, n_threads)
    if kernel == "multiclass_hinge":
        return call(x, labels, weight, options["margin"], options["squared"],
                    options["kind"] == "crammer_singer", loss_out, grad_out, grad_scale,
                    n_threads), False
    raise ValueError(f"unknown multiclass kernel {kernel!r}")
