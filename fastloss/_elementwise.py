"""The fast elementwise losses: validation, then one fused kernel call.

Each function has the signature, semantics and docstring of its twin in
:mod:`fastloss.reference`; the work is done by ``_elementwise_kernels``.
"""
from __future__ import annotations

import numpy as np

from fastloss import reference
from fastloss._dispatch import elementwise_kernels as _elementwise_kernels
from fastloss._validation import (LossGrad, LossGradHess, as_pos_weight, binary_targets,
                                  check_probabilities, writes_over_input,
                                  check_parameter, mean_denominator, prepare_elementwise,
                                  prepare_hinge, settle_weights)

_NO_ARRAY = np.empty(0)
_NO_OUTPUT = {dt: np.empty((0, 0), dtype=dt) for dt in (np.dtype(np.float32),
                                                        np.dtype(np.float64))}
_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _specialised(name):
    """The float and double specialisations of a fused kernel, by NumPy dtype.

    Calling a specialisation directly skips Cython's fused-type dispatch,
    which costs microseconds per call.
    """
    fused = getattr(_elementwise_kernels, name)
    return {dt: fused.__signatures__[ctype] for dt, ctype in _CTYPE.items()}


_KERNELS = {name: _specialised(name) for name in
            (*_elementwise_kernels.PARAMETERS, "scan_targets")}
# name -> (number of the kernel's own arguments, whether the last is a per-column array)
_KERNEL_ARGUMENTS = {name: (len(names), bool(names) and names[-1].endswith("_per_column"))
                     for name, names in _elementwise_kernels.PARAMETERS.items()}
_BAD_TARGETS = _elementwise_kernels.TARGET_INVALID
# The kernels that check their targets and return (total, seen): whether the
# targets are probabilities in [0, 1] (else binary hinge targets).
_TARGET_CHECKS = {"binary_cross_entropy": True, "hinge": False, "squared_hinge": False}


def same_doc_as(reference_function):
    """Give a fast function the docstring of its reference twin."""
    def decorate(function):
        function.__doc__ = reference_function.__doc__
        return function
    return decorate


def _run(name, prep, *params, more=(), check=None):
    """Call the fused kernel of ``name`` and apply the reduction.

    ``params`` are the kernel's own arguments, in the order of its parameter
    struct (``_elementwise_kernels.PARAMETERS[name]``): none for mse, delta,
    margin, or pos_weight and optionally pos_weight_per_column, a (K,) float64
    array that replaces pos_weight column by column (None or left out: none).

    ``more`` holds the kernel's inputs after (pred, target) as (array, out)
    pairs: array of pred's shape, or with one value per row of a 2-D pred
    (shape (N,) or (N, 1)), and out None or a validated array of its shape
    that receives its gradient.  Their gradients follow pred's: the result's
    grad is then the tuple (grad_pred, grad_1, ...).

    ``check(seen)`` is called with the bits of a kernel that checks its
    values (and raises for bad ones); by default the checks of binary
    cross-entropy and the hinge losses.
    """
    shape, dtype = prep.shape, prep.dtype
    n_rows = shape[0]
    row_size = 1 if len(shape) == 1 else shape[1]
    n_params, has_columns = _KERNEL_ARGUMENTS[name]
    per_column = has_columns and len(params) == n_params and params[-1] is not None
    if has_columns and not per_column:
        params = (*params[:n_params - 1], _NO_ARRAY)
    if prep.weight is None and not per_column and (
            not more or all(a.shape == shape for a, _ in more)):
        view = (n_rows * row_size, 1)       # nothing depends on the row: one flat loop
    else:
        view = (n_rows, row_size)

    reduction = prep.reduction
    scale, denominator = 1.0, 1.0
    if reduction == "mean":
        denominator = mean_denominator(prep, row_size)
        settle_weights(prep, denominator)
        if denominator == 0:                # a mean over nothing: 0 and a zero gradient
            empty = _empty_mean(prep)
            if not more or not prep.grad:
                return empty
            zeros = [np.zeros(a.shape, dtype) if out is None else out for a, out in more]
            for out in zeros:
                out.fill(0)
            return empty._replace(grad=(empty.grad, *zeros))
        scale = 1.0 / denominator

    none = _NO_OUTPUT[dtype]
    loss_out = np.empty(view, dtype) if reduction == "none" else none
    if not prep.grad:
        grad_out = none
    elif prep.out is not None:
        grad_out = prep.out.reshape(view)
    else:
        grad_out = np.empty(view, dtype)
    hess_out = np.empty(view, dtype) if prep.hess else none
    weight = _NO_ARRAY if prep.weight is None else prep.weight
    kernel = _KERNELS[name][dtype]
    if not more:
        total = kernel(prep.pred.reshape(view), prep.target.reshape(view), weight, loss_out,
                       grad_out, hess_out, scale, prep.n_threads, *params)
    else:
        more_views = [(view if a.shape == shape else (n_rows, 1)) for a, _ in more]
        more_grads = [none if not prep.grad else
                      (out.reshape(v) if out is not None else np.empty(v, dtype))
                      for (a, out), v in zip(more, more_views)]
        inputs = [a.reshape(v) for (a, _), v in zip(more, more_views)]
        total = kernel(prep.pred.reshape(view), prep.target.reshape(view), *inputs, weight,
                       loss_out, grad_out, *more_grads, hess_out, scale, prep.n_threads,
                       *params)
    if type(total) is tuple:
        total, seen = total
        if check is None:
            _check_seen_targets(name, prep, seen)
        else:
            check(seen)
    settle_weights(prep, total)
    if reduction == "none":
        loss = loss_out.reshape(shape)
    else:
        loss = total / denominator          # one rounding (total * scale would be two)
    if not prep.grad:
        grad = None
    elif prep.out is not None:
        grad = prep.out             # out itself, as NumPy's out= returns it
    else:
        grad = grad_out.reshape(shape)
    if more and grad is not None:
        grad = (grad, *(out if out is not None else g.reshape(a.shape)
                        for (a, out), g in zip(more, more_grads)))
    if prep.hess:
        return LossGradHess(loss, grad, hess_out.reshape(shape))
    return LossGrad(loss, grad)


def _check_seen_targets(name, prep, seen):
    """Raise the validation layer's error if the kernel met invalid targets."""
    if _TARGET_CHECKS[name]:
        if seen & _BAD_TARGETS:
            check_probabilities(prep.target, "target", at_most_one=True)   # raises
            raise AssertionError("check_probabilities accepted targets the kernel rejected")
        return
    zero_and_minus_one = _elementwise_kernels.TARGET_ZERO | _elementwise_kernels.TARGET_MINUS_ONE
    if seen & _BAD_TARGETS or seen & zero_and_minus_one == zero_and_minus_one:
        binary_targets(prep.target, "target")       # raises the error naming the value
        raise AssertionError("binary_targets accepted targets the kernel rejected")


def _scan_targets(prep, unit):
    """The TARGET_* bits of every target, in a pass of their own (before writing in place)."""
    return _KERNELS["scan_targets"][prep.dtype](prep.target.reshape(-1), unit)


def _hinge_family(name, prep, margin):
    if writes_over_input(prep):
        # In place, the kernel would overwrite the scores before reporting bad
        # targets: check first, so that a failing call leaves them untouched.
        _check_seen_targets(name, prep, _scan_targets(prep, False))
    return _run(name, prep, margin)


def _empty_mean(prep):
    """A "mean" over nothing: 0 with an all-zero gradient (and Hessian)."""
    if not prep.grad:
        return LossGrad(0.0, None)
    grad = prep.out if prep.out is not None else np.empty(prep.shape, prep.dtype)
    grad.fill(0)
    if prep.hess:
        return LossGradHess(0.0, grad, np.zeros(prep.shape, prep.dtype))
    return LossGrad(0.0, grad)


@same_doc_as(reference.mse)
def mse(pred, target, *, sample_weight=None, reduction="mean", grad=True, hess=False,
        out=None, n_threads=None):
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess, defer_weight_check=True)
    return _run("mse", prep)


@same_doc_as(reference.huber)
def huber(pred, target, *, delta=1.0, sample_weight=None, reduction="mean", grad=True,
          hess=False, out=None, n_threads=None):
    delta = check_parameter(delta, "delta", positive=True)
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess, defer_weight_check=True)
    return _run("huber", prep, delta)


@same_doc_as(reference.binary_cross_entropy)
def binary_cross_entropy(logits, target, *, pos_weight=None, sample_weight=None,
                         reduction="mean", grad=True, hess=False, out=None, n_threads=None):
    prep = prepare_elementwise(logits, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="logits", hess=hess, defer_weight_check=True)
    if writes_over_input(prep):
        # In place, the kernel would overwrite the logits before reporting a bad
        # target: check first, so that a failing call leaves them untouched.
        _check_seen_targets("binary_cross_entropy", prep, _scan_targets(prep, True))
    if pos_weight is None:
        return _run("binary_cross_entropy", prep, 1.0)
    pw = as_pos_weight(pos_weight, 1 if prep.pred.ndim == 1 else prep.shape[1])
    if prep.pred.ndim == 1 or np.ndim(pos_weight) == 0:
        return _run("binary_cross_entropy", prep, float(pw[0]))
    return _run("binary_cross_entropy", prep, 1.0, pw)


@same_doc_as(reference.hinge)
def hinge(scores, target, *, margin=1.0, sample_weight=None, reduction="mean", grad=True,
          out=None, n_threads=None):
    margin = check_parameter(margin, "margin")
    prep = prepare_hinge(scores, target, sample_weight, reduction, grad, out, n_threads,
                         map_targets=False, defer_weight_check=True)
    return _hinge_family("hinge", prep, margin)


@same_doc_as(reference.squared_hinge)
def squared_hinge(scores, target, *, margin=1.0, sample_weight=None, reduction="mean",
                  grad=True, out=None, n_threads=None):
    margin = check_parameter(margin, "margin")
    prep = prepare_hinge(scores, target, sample_weight, reduction, grad, out, n_threads,
                         map_targets=False, defer_weight_check=True)
    return _hinge_family("squared_hinge", prep, margin)
