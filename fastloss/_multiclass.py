"""The fast multiclass losses and row utilities: validation, then one fused kernel call.

Each function has the signature, semantics and docstring of its twin in
:mod:`fastloss.reference`; the work is done by ``_multiclass_kernels``.
"""
from __future__ import annotations

import numpy as np

from fastloss import reference
from fastloss._dispatch import multiclass_kernels as _multiclass_kernels
from fastloss._elementwise import _empty_mean, same_doc_as
from fastloss._validation import (LossGrad, LossGradHess, check_cross_entropy_extras,
                                  check_kind, check_parameter, check_probabilities, mean_denominator, prepare_multiclass,
                                  prepare_rows, settle_weights)

_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_NO_WEIGHT = np.empty(0)


def _specialised(name):
    """The float and double specialisations of a fused kernel, by NumPy dtype."""
    fused = getattr(_multiclass_kernels, name)
    return {dt: fused.__signatures__[ctype] for dt, ctype in _CTYPE.items()}


_KERNELS = {name: _specialised(name) for name in
            ("softmax_cross_entropy", "softmax_focal_loss", "softmax_binary_cross_entropy",
             "kl_divergence", "multiclass_hinge", "logsumexp", "softmax", "log_softmax")}


def _call(name, x, target, labels, sample_weight, loss_out, grad_out, grad_scale, n_threads,
          hess_out=None, class_weight=None, label_smoothing=0.0, ignore_index=None,
          z_loss=0.0, softcap=None, gamma=0.0, margin=0.0, squared=False,
          crammer_singer=False):
    """One call of a fused kernel, with the arguments its signature takes (see the
    kernels' module docstring); returns (the float64 sum of s_i loss_i, bad_targets)."""
    kernel = _KERNELS[name][x.dtype]
    if name == "softmax_cross_entropy":
        return kernel(x, target, labels, sample_weight, class_weight, label_smoothing,
                      ignore_index, z_loss, 0.0 if softcap is None else softcap,
                      loss_out, grad_out, hess_out, grad_scale, n_threads)
    if name == "softmax_focal_loss":
        return kernel(x, labels, sample_weight, class_weight, gamma, ignore_index,
                      loss_out, grad_out, hess_out, grad_scale, n_threads), False
    if name == "softmax_binary_cross_entropy":
        return kernel(x, target, labels, sample_weight, loss_out, grad_out, grad_scale,
                      n_threads)
    if name == "kl_divergence":
        return kernel(x, target, sample_weight, loss_out, grad_out, hess_out, grad_scale,
                      n_threads)
    if name == "multiclass_hinge":
        return kernel(x, labels, sample_weight, margin, squared, crammer_singer, loss_out,
                      grad_out, grad_scale, n_threads), False
    kernel(x, grad_out if loss_out is None else loss_out, n_threads)    # a row utility
    return 0.0, False


def _run(name, prep, denominator, **params):
    """Run a multiclass loss kernel and apply the reduction.

    ``denominator`` is the "mean" divisor; ``params`` the loss parameters of
    :func:`_call`.
    """
    dtype, shape = prep.dtype, prep.shape
    reduction = prep.reduction
    grad_scale = 1.0
    if reduction == "mean":
        settle_weights(prep, denominator)
        if denominator == 0:            # a mean over nothing: 0 and a zero gradient
            return _empty_mean(prep)
        grad_scale = 1.0 / denominator
    loss_out = np.zeros(shape[0], dtype) if reduction == "none" else None
    grad_out = hess_out = None
    if prep.grad:
        grad_out = prep.out if prep.out is not None else np.empty(shape, dtype)
        if shape[1] == 0:
            grad_out.fill(0)
    if prep.hess:
        hess_out = np.empty(shape, dtype)
    labels = prep.target if prep.has_labels else None
    target = None if prep.has_labels else prep.target
    total, bad_targets = _call(name, prep.pred, target, labels, prep.weight, loss_out, grad_out,
                               grad_scale, prep.n_threads, hess_out=hess_out, **params)
    if bad_targets:
        check_probabilities(target, "target", at_most_one=False)    # raises
        raise AssertionError("check_probabilities accepted targets the kernel rejected")
    settle_weights(prep, total)
    if reduction == "none":
        loss = loss_out
    elif reduction == "mean":
        loss = total / denominator
    else:
        loss = total
    if prep.hess:
        return LossGradHess(loss, grad_out, hess_out)
    return LossGrad(loss, grad_out)


def _rows_denominator(prep):
    """The "mean" divisor of a loss averaged over rows: sum_i s_i (N without weights)."""
    return mean_denominator(prep, 1)


@same_doc_as(reference.softmax_cross_entropy)
def softmax_cross_entropy(logits, target, *, class_weight=None, ignore_index=None,
                          label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
                          reduction="mean", grad=True, hess=False, out=None, n_threads=None):
    z_loss, softcap = check_cross_entropy_extras(z_loss, softcap, hess)
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              class_weight=class_weight, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, hess=hess,
                              defer_weight_check=True)
    return _run("softmax_cross_entropy", prep, _label_denominator(prep),
                class_weight=prep.class_weight, label_smoothing=prep.label_smoothing,
                ignore_index=prep.ignore_index, z_loss=z_loss, softcap=softcap)


def _label_denominator(prep):
    """The "mean" divisor of the label losses: sum_i s_i w_{y_i} over the rows not
    ignored (torch's weighted mean); sum_i s_i for probability targets."""
    if not prep.has_labels:
        return _rows_denominator(prep)
    if prep.shape[1] == 0:
        return 0.0                      # every label is ignored
    return _multiclass_kernels.label_weight_sum(
        prep.target, _NO_WEIGHT if prep.class_weight is None else prep.class_weight,
        _NO_WEIGHT if prep.weight is None else prep.weight,
        prep.ignore_index is not None,
        0 if prep.ignore_index is None else prep.ignore_index)


@same_doc_as(reference.softmax_focal_loss)
def softmax_focal_loss(logits, target, *, gamma=2.0, class_weight=None, ignore_index=None,
                       sample_weight=None, reduction="mean", grad=True, hess=False, out=None,
                       n_threads=None):
    gamma = check_parameter(gamma, "gamma")
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", class_weight=class_weight,
                              ignore_index=ignore_index, hess=hess, defer_weight_check=True)
    return _run("softmax_focal_loss", prep, _label_denominator(prep), gamma=gamma,
                class_weight=prep.class_weight, ignore_index=prep.ignore_index)


@same_doc_as(reference.softmax_binary_cross_entropy)
def softmax_binary_cross_entropy(logits, target, *, sample_weight=None, reduction="mean",
                                 grad=True, out=None, n_threads=None):
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              defer_weight_check=True)
    return _run("softmax_binary_cross_entropy", prep, _rows_denominator(prep))


@same_doc_as(reference.kl_divergence)
def kl_divergence(logits, target, *, sample_weight=None, reduction="mean", grad=True,
                  hess=False, out=None, n_threads=None):
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="probabilities", hess=hess,
                              defer_weight_check=True)
    return _run("kl_divergence", prep, _rows_denominator(prep))


@same_doc_as(reference.multiclass_hinge)
def multiclass_hinge(scores, target, *, margin=1.0, kind="weston_watkins", squared=False,
                     sample_weight=None, reduction="mean", grad=True, out=None,
                     n_threads=None):
    margin = check_parameter(margin, "margin")
    kind = check_kind(kind)
    prep = prepare_multiclass(scores, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", pred_name="scores",
                              defer_weight_check=True)
    return _run("multiclass_hinge", prep, _rows_denominator(prep), margin=margin,
                squared=bool(squared), crammer_singer=kind == "crammer_singer")


@same_doc_as(reference.logsumexp)
def logsumexp(x, *, out=None, n_threads=None):
    arr, out, threads = prepare_rows(x, out, n_threads, out_ndim=1)
    result = out if out is not None else np.empty(arr.shape[0], arr.dtype)
    if arr.shape[1] == 0:
        result.fill(-np.inf)            # the log of an empty sum
    else:
        _call("logsumexp", arr, None, None, None, result, None, 1.0, threads)
    return result


def _row_map(name, x, out, n_threads):
    """Run the row utility ``name`` whose output has the shape of x (softmax, log_softmax)."""
    arr, out, threads = prepare_rows(x, out, n_threads, out_ndim=2)
    result = out if out is not None else np.empty(arr.shape, arr.dtype)
    _call(name, arr, None, None, None, None, result, 1.0, threads)
    return result


@same_doc_as(reference.softmax)
def softmax(x, *, out=None, n_threads=None):
    return _row_map("softmax", x, out, n_threads)


@same_doc_as(reference.log_softmax)
def log_softmax(x, *, out=None, n_threads=None):
    return _row_map("log_softmax", x, out, n_threads)
