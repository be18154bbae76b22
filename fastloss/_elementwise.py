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
from fastloss._checks import (Prepared, check_scalar_params, check_shaped_params,
                              prepare_elementwise, writes_over_input)
from fastloss._reduction import empty_mean, mean_denominator, settle_weights
from fastloss._registry import Loss
from fastloss._results import LossGrad, LossGradHess
from fastloss._targets import REAL, SIGNS, UNIT_INTERVAL

_elementwise_kernels = _dispatch.elementwise_kernels
_KERNELS = _dispatch.specialisations(_elementwise_kernels)
_NO_WEIGHT = _dispatch.NO_WEIGHT
_NO_ROWS = _dispatch.NO_ROWS

_INVALID = _elementwise_kernels.TARGET_INVALID
_ZERO_AND_MINUS_ONE = _elementwise_kernels.TARGET_ZERO | _elementwise_kernels.TARGET_MINUS_ONE


def run(spec: Loss, pred: Any, target: Any, params: tuple[Any, ...], sample_weight: Any,
        reduction: Any, grad: Any, hess: Any, out: Any,
        n_threads: Any) -> LossGrad | LossGradHess:
    """One call of the elementwise loss ``spec`` (``params``: its parameters, in declared order)."""
    values = check_scalar_params(spec.params, params) if params else params
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name=spec.inputs[0], hess=hess, defer_weight_check=True)
    if prep.pred.ndim not in spec.ndims:
        raise ValueError(spec.shape_error.format(shape=prep.shape))
    rule = spec.target
    if rule is not REAL and writes_over_input(prep):
        # In place, the kernel would overwrite the predictions before reporting a
        # bad target: check first, so that a failing call leaves them untouched.
        _raise_if_bad_targets(spec, prep, _scan_targets(spec, prep))
    if params:
        values = check_shaped_params(spec.params, values, prep.shape)
    return _reduce(spec, prep, values)


def _reduce(spec: Loss, prep: Prepared, values: tuple[Any, ...]) -> LossGrad | LossGradHess:
    """Run the fused kernel of ``spec`` on prepared arguments and apply the reduction."""
    shape, dtype = prep.shape, prep.dtype
    n_rows = shape[0]
    row_size = 1 if len(shape) == 1 else shape[1]
    per_column = any(type(value) is np.ndarray for value in values)
    if prep.weight is None and not per_column:
        view = (n_rows * row_size, 1)       # nothing depends on the row: one flat loop
    else:
        view = (n_rows, row_size)

    reduction = prep.reduction
    scale, denominator = 1.0, 1.0
    if reduction == "mean":
        denominator = mean_denominator(n_rows, row_size, prep.weight)
        settle_weights(prep, denominator)
        if denominator == 0:                # a mean over nothing: 0 and a zero gradient
            return empty_mean(prep)
        scale = 1.0 / denominator

    none = _NO_ROWS[dtype]
    loss_out = np.empty(view, dtype) if reduction == "none" else none
    if not prep.grad:
        grad_out = none
    elif prep.out is not None:
        grad_out = prep.out.reshape(view)
    else:
        grad_out = np.empty(view, dtype)
    hess_out = np.empty(view, dtype) if prep.hess else none
    total, seen = _call_kernel(spec, prep, view, values, loss_out, grad_out, hess_out, scale)
    if seen:
        _raise_if_bad_targets(spec, prep, seen)
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
    if prep.hess:
        return LossGradHess(loss, grad, hess_out.reshape(shape))
    return LossGrad(loss, grad)


# --- the kernel calls: the only code that knows the kernels' argument lists ------------

def _call_kernel(spec: Loss, prep: Prepared, view: tuple[int, int], values: tuple[Any, ...],
                 loss_out: np.ndarray, grad_out: np.ndarray, hess_out: np.ndarray,
                 grad_scale: float) -> tuple[float, int]:
    """Call the fused kernel of ``spec``: returns (the float64 total of w * loss, the
    TARGET_* bits of the targets it met, 0 for a loss without a target check).

    Today's kernels share one signature (see ``_elementwise_kernels.pyx.tp``):
    ``(pred, target, weight, param_per_column, param, loss_out, grad_out,
    hess_out, grad_scale, n_threads)``, with one float parameter (delta, margin
    or a scalar pos_weight; 1.0 without pos_weight, unused by mse) or a (K,)
    parameter per column.
    """
    param, columns = 1.0, _NO_WEIGHT
    for value in values:
        if value is None:
            continue
        if type(value) is np.ndarray:
            columns = value
        else:
            param = value
    if not values:
        param = 0.0
    result = _KERNELS[spec.kernel][prep.dtype](
        prep.pred.reshape(view), prep.target.reshape(view),
        _NO_WEIGHT if prep.weight is None else prep.weight, columns, param,
        loss_out, grad_out, hess_out, grad_scale, prep.n_threads)
    if spec.target is REAL:
        return result, 0
    return result  # type: ignore[no-any-return]


def _scan_targets(spec: Loss, prep: Prepared) -> int:
    """The TARGET_* bits of every target, in a pass of their own (before writing in place)."""
    return _KERNELS["scan_targets"][prep.dtype](prep.target.reshape(-1),  # type: ignore[no-any-return]
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
