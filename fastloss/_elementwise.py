"""The call path of the elementwise losses: checks, one fused kernel call, the result.

Design: every elementwise loss is declared in :mod:`fastloss._elementwise_losses`;
its public function calls :func:`run` with its declaration.  ``run``

1. checks the loss's scalar parameters (their declared rules), then every
   other argument (:func:`fastloss._checks.prepare_elementwise`);
2. when the gradient would overwrite the predictions, checks the targets
   first (a kernel pass of their own), so that a failing call leaves them
   untouched;
3. calls the fused kernel once (:func:`_call_kernel`, the only function that
   knows the kernels' argument lists) for the loss, gradient and Hessian;
4. raises the target rule's error if the kernel reported a bad target, and
   the sample weights' error if they were not finite (both checks ride on
   the kernel's own pass);
5. divides by the "mean" divisor (:mod:`fastloss._reduction`) and returns
   ``LossGrad`` or ``LossGradHess``.

Nothing here is specific to one loss; what differs between losses is data
in their declarations.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastloss import _dispatch
from fastloss._checks import (Prepared, prepare_elementwise, prepare_further_inputs,
                              writes_over_input)
from fastloss._reduction import empty_mean, mean_denominator, settle_weights
from fastloss._registry import Loss
from fastloss._results import LossGrad, LossGradHess
from fastloss._targets import REAL, SIGNS, UNIT_INTERVAL

_elementwise_kernels = _dispatch.elementwise_kernels
_KERNELS = _dispatch.specialisations(_elementwise_kernels)
_NO_WEIGHT = _dispatch.NO_WEIGHT
_NO_ROWS = _dispatch.NO_ROWS

_INVALID = _elementwise_kernels.TARGET_INVALID
# Each kernel's own parameters, in order (the def kernels' last arguments).
_PARAMETERS: dict[str, tuple[str, ...]] = _elementwise_kernels.PARAMETERS
_ZERO_AND_MINUS_ONE = _elementwise_kernels.TARGET_ZERO | _elementwise_kernels.TARGET_MINUS_ONE


def run(spec: Loss, pred: Any, target: Any, params: tuple[Any, ...], sample_weight: Any,
        reduction: Any, grad: Any, hess: Any, out: Any,
        n_threads: Any) -> LossGrad | LossGradHess:
    """One call of the elementwise loss ``spec`` (``params``: its parameters, in declared order)."""
    values = spec.check_scalars(params) if params else params
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               spec.inputs[0], "target", hess, True)
    shape, dtype = prep.shape, prep.dtype
    if len(shape) not in spec.ndims:
        raise ValueError(spec.shape_error.format(shape=shape))
    if spec.target is not REAL and prep.out is not None and writes_over_input(prep):
        # In place, the kernel would overwrite the predictions before reporting a
        # bad target: check first, so that a failing call leaves them untouched.
        _raise_if_bad_targets(spec, prep, _scan_targets(spec, prep))
    if spec.check_shaped is not None:
        values = spec.check_shaped(values, shape)

    scale = denominator = 1.0
    if reduction == "mean":
        denominator = mean_denominator(shape[0], 1 if len(shape) == 1 else shape[1],
                                       prep.weight)
        settle_weights(prep, denominator)
        if denominator == 0:                # a mean over nothing: 0 and a zero gradient
            return empty_mean(prep)
        scale = 1.0 / denominator
    loss_out = np.empty(shape, dtype) if reduction == "none" else None
    grad_out = None
    if prep.grad:
        # out itself, as NumPy's out= returns it
        grad_out = prep.out if prep.out is not None else np.empty(shape, dtype)
    hess_out = np.empty(shape, dtype) if prep.hess else None
    total, seen = _call_kernel(spec, prep, values, loss_out, grad_out, hess_out, scale)
    if seen:
        _raise_if_bad_targets(spec, prep, seen)
    settle_weights(prep, total)
    # (a reduced loss: one rounding, where total * scale would be two)
    loss = loss_out if loss_out is not None else total / denominator
    if hess_out is not None:
        assert grad_out is not None
        return LossGradHess(loss, grad_out, hess_out)
    return LossGrad(loss, grad_out)


def run_several(spec: Loss, inputs: tuple[Any, ...], params: tuple[Any, ...],
                sample_weight: Any, reduction: Any, grad: Any, hess: Any,
                outs: tuple[Any, ...], n_threads: Any) -> LossGrad | LossGradHess:
    """One call of an elementwise loss with further inputs or several gradients.

    The hook for a loss such as a Gaussian negative log-likelihood, declared
    with inputs ("mean", "target", "var") and gradients ("mean", "var"): the
    steps of :func:`run`, with each further input checked by
    :func:`fastloss._checks.prepare_further_inputs` (``out_var`` included)
    and one gradient array per declared gradient, handed to the kernel after
    grad_out (:func:`_call_kernel`).  Returns ``LossGrad(loss, grads)``,
    ``grads`` a tuple in the declared order (``None`` with grad=False).
    """
    values = spec.check_scalars(params) if params else params
    prep = prepare_elementwise(inputs[0], inputs[1], sample_weight, reduction, grad, outs[0],
                               n_threads, spec.inputs[0], "target", hess, True)
    further, further_outs = prepare_further_inputs(prep, spec.inputs, spec.gradients,
                                                   inputs[2:], outs[1:])
    shape, dtype = prep.shape, prep.dtype
    if len(shape) not in spec.ndims:
        raise ValueError(spec.shape_error.format(shape=shape))
    if spec.target is not REAL and prep.out is not None and writes_over_input(prep):
        _raise_if_bad_targets(spec, prep, _scan_targets(spec, prep))
    if spec.check_shaped is not None:
        values = spec.check_shaped(values, shape)
    arrays = dict(zip(spec.inputs, (prep.pred, prep.target) + further))
    outs = (prep.out,) + further_outs

    def gradient_arrays(fill: bool) -> tuple[np.ndarray, ...]:
        grads = tuple(np.empty(arrays[name].shape, dtype) if out is None else out
                      for name, out in zip(spec.gradients, outs))
        for g in grads if fill else ():
            g.fill(0)
        return grads

    scale = denominator = 1.0
    if reduction == "mean":
        denominator = mean_denominator(shape[0], 1 if len(shape) == 1 else shape[1],
                                       prep.weight)
        settle_weights(prep, denominator)
        if denominator == 0:                # a mean over nothing: 0 and zero gradients
            if not prep.grad:
                return LossGrad(0.0, None)
            if prep.hess:
                return LossGradHess(0.0, gradient_arrays(True),  # type: ignore[arg-type]
                                    np.zeros(shape, dtype))
            return LossGrad(0.0, gradient_arrays(True))  # type: ignore[arg-type]
        scale = 1.0 / denominator
    loss_out = np.empty(shape, dtype) if reduction == "none" else None
    grads = gradient_arrays(False) if prep.grad else None
    hess_out = np.empty(shape, dtype) if prep.hess else None
    total, seen = _call_kernel(spec, prep, values, loss_out, grads, hess_out, scale, further)
    if seen:
        _raise_if_bad_targets(spec, prep, seen)
    settle_weights(prep, total)
    loss = loss_out if loss_out is not None else total / denominator
    if hess_out is not None:
        return LossGradHess(loss, grads, hess_out)  # type: ignore[arg-type]
    return LossGrad(loss, grads)  # type: ignore[arg-type]


# --- the kernel calls: the only code that knows the kernels' argument lists ------------

def _call_kernel(spec: Loss, prep: Prepared, values: tuple[Any, ...],
                 loss_out: np.ndarray | None,
                 grad_out: np.ndarray | tuple[np.ndarray, ...] | None,
                 hess_out: np.ndarray | None, grad_scale: float,
                 further: tuple[np.ndarray, ...] = ()) -> tuple[float, int]:
    """Call the fused kernel of ``spec``: returns (the float64 total of w * loss, the
    TARGET_* bits of the targets it met, 0 for a loss without a target check).

    The outputs have the predictions' shape, or are None (not computed).  The
    kernels' argument lists (see ``_elementwise_kernels.pyx.tp``)::

        kernel(pred, target, *further inputs, weight, loss_out, grad_out,
               *further gradients, hess_out, grad_scale, n_threads, *own parameters)

    on (n_rows, row_size) views, with (0,) or (0, 0) arrays for the absent
    ones.  The own parameters are the declared values in order (delta,
    margin; none for mse); a per-column parameter (pos_weight of shape (K,))
    is passed as 1.0 followed by its (K,) array, and a kernel that takes one
    (``PARAMETERS`` names it ``..._per_column``) gets an empty array without it.
    ``grad_out`` is a tuple of one array per declared gradient for a loss
    with several (:func:`run_several`).
    """
    own: list[Any] = []
    columns = None
    for value in values:
        if type(value) is np.ndarray:
            own.append(1.0)
            columns = value
        else:
            own.append(1.0 if value is None else value)
    names = _PARAMETERS.get(spec.kernel)
    if columns is not None or (names is not None and len(names) > len(own)):
        own.append(_NO_WEIGHT if columns is None else columns)
    shape = prep.shape
    row_size = 1 if len(shape) == 1 else shape[1]
    if prep.weight is None and columns is None:
        view = (shape[0] * row_size, 1)     # nothing depends on the row: one flat loop
    else:
        view = (shape[0], row_size)
    none = _NO_ROWS[prep.dtype]
    kernel = _KERNELS[spec.kernel][prep.dtype]
    weight = _NO_WEIGHT if prep.weight is None else prep.weight
    loss = none if loss_out is None else loss_out.reshape(view)
    hess = none if hess_out is None else hess_out.reshape(view)
    if isinstance(grad_out, tuple) or further:
        grads = [none] * len(spec.gradients) if grad_out is None \
            else [g.reshape(view) for g in grad_out]
    else:
        grads = [none if grad_out is None else grad_out.reshape(view)]
    result = kernel(prep.pred.reshape(view), prep.target.reshape(view),
                    *[x.reshape(view) for x in further], weight, loss, *grads, hess,
                    grad_scale, prep.n_threads, *own)
    if spec.target is REAL:
        return result, 0
    return result


def _scan_targets(spec: Loss, prep: Prepared) -> int:
    """The TARGET_* bits of every target, in a pass of their own (before writing in place)."""
    return _KERNELS["scan_targets"][prep.dtype](prep.target.reshape(-1),
                                                spec.target is UNIT_INTERVAL)


def _raise_if_bad_targets(spec: Loss, prep: Prepared, seen: int) -> None:
    """Raise the target rule's error if the bits the kernel saw contain a bad target.

    Probabilities ([0, 1]): a value outside.  Binary targets: a value outside
    {-1, 0, 1}, or both 0 and -1 (a mix that is ambiguous).
    """
    bad = seen & _INVALID
    if spec.target is SIGNS:
        bad = bad or seen & _ZERO_AND_MINUS_ONE == _ZERO_AND_MINUS_ONE
    if bad:
        spec.target.check(prep.target, "target")      # raises the error naming the value
        raise AssertionError(f"{spec.target.name} targets accepted by the check were "
                             f"rejected by the kernel")
