"""The call path of the elementwise losses: checks, one fused kernel call, the result.

Design: every elementwise loss is declared in :mod:`fastloss._elementwise_losses`;
its public function calls :func:`run` with its declaration.  ``run``

1. checks the loss's scalar parameters (their declared rules), then every
   other argument (:func:`fastloss._checks.prepare_elementwise`);
2. when a gradient would overwrite an input, checks the values the kernel
   checks (the targets, or a variance) first, in a kernel pass of their own,
   so that a failing call leaves every input untouched;
3. calls the fused kernel once (:func:`_call_kernel`, the only function that
   knows the kernels' argument lists) for the loss, gradient and Hessian;
4. raises the target rule's error if the kernel reported a bad target, and
   the sample weights' error if they were not finite (both checks ride on
   the kernel's own pass);
5. divides by the "mean" divisor (:mod:`fastloss._reduction`) and returns
   ``LossGrad`` or ``LossGradHess``.

``run`` itself is the compiled call path (:mod:`fastloss._fastpath`): it
takes the common call (native C-contiguous float arrays, parameters that
pass their rules as they stand, ``out`` None or a separate array), makes
the same checks at C speed and the same kernel call, and hands every other
call to :func:`run_python`, the steps above in Python, which stay the
reference of the rules (every error message is theirs).

Nothing here is specific to one loss; what differs between losses is data
in their declarations.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fastloss import _dispatch
from fastloss._checks import (Prepared, check_finite, prepare_elementwise,
                              prepare_further_inputs, refuse_hess, writes_over_input)
from fastloss._fastpath import (bind_elementwise, bind_elementwise_entries, bind_several,
                                run_elementwise)
from fastloss._fastpath import run_several as run_several_compiled
from fastloss._reduction import empty_mean, mean_denominator, settle_weights
from fastloss._registry import Loss
from fastloss._results import LossGrad, LossGradHess
from fastloss._targets import SIGNS

_elementwise_kernels = _dispatch.elementwise_kernels
_KERNELS = _dispatch.specialisations(_elementwise_kernels)
_NO_WEIGHT = _dispatch.NO_WEIGHT
_NO_ROWS = _dispatch.NO_ROWS

_INVALID = _elementwise_kernels.TARGET_INVALID
# Each kernel's own parameters, in order (the def kernels' last arguments).
_PARAMETERS: dict[str, tuple[str, ...]] = _elementwise_kernels.PARAMETERS
_ZERO_AND_MINUS_ONE = _elementwise_kernels.TARGET_ZERO | _elementwise_kernels.TARGET_MINUS_ONE


def run_python(spec: Loss, pred: Any, target: Any, params: tuple[Any, ...], sample_weight: Any,
               reduction: Any, grad: Any, hess: Any, out: Any,
               n_threads: Any) -> LossGrad | LossGradHess:
    """One call of the elementwise loss ``spec`` (``params``: its parameters, in declared
    order), every step in Python: the reference of :func:`run`'s compiled path."""
    if not spec.hess and hess is not False:
        refuse_hess(hess, spec.name)
    values = spec.check_scalars(params) if params else params
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               spec.inputs[0], "target", hess, True)
    shape, dtype = prep.shape, prep.dtype
    if len(shape) not in spec.ndims:
        raise ValueError(spec.shape_error.format(shape=shape))
    if spec.checked is not None and prep.out is not None and writes_over_input(prep):
        # In place, the kernel would overwrite the predictions before reporting a
        # bad target: check first, so that a failing call leaves them untouched.
        _check_first(spec, prep.target)
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
        _raise_if_bad(spec, prep.target, seen)
    settle_weights(prep, total)
    # (a reduced loss: one rounding, where total * scale would be two)
    loss = loss_out if loss_out is not None else total / denominator
    if hess_out is not None:
        assert grad_out is not None
        return LossGradHess(loss, grad_out, hess_out)
    return LossGrad(loss, grad_out)


def run_several_python(spec: Loss, inputs: tuple[Any, ...], params: tuple[Any, ...],
                       sample_weight: Any, reduction: Any, grad: Any, hess: Any,
                       outs: tuple[Any, ...], n_threads: Any) -> LossGrad | LossGradHess:
    """One call of an elementwise loss with further inputs or several gradients, every
    step in Python: the reference of :func:`run_several`'s compiled path.

    A loss such as the Gaussian negative log-likelihood, declared with inputs
    ("mean", "target", "var") and gradients ("mean", "var"): the steps of
    :func:`run`, with each further input checked by
    :func:`fastloss._checks.prepare_further_inputs` (``out_var`` included)
    and one gradient array per declared gradient, handed to the kernel after
    grad_out (:func:`_call_kernel`).  A further input with one value per row
    of a 2-D prediction is read by the kernel as such (an (N, 1) view; its
    gradient summed over the row inside the kernel); an input broadcast in
    any other way is read expanded, and its gradient summed here.  Returns
    ``LossGrad(loss, grads)``, ``grads`` a tuple in the declared order
    (``None`` with grad=False).
    """
    if not spec.hess and hess is not False:
        refuse_hess(hess, spec.name)
    values = spec.check_scalars(params) if params else params
    prep = prepare_elementwise(inputs[0], inputs[1], sample_weight, reduction, grad, outs[0],
                               n_threads, spec.inputs[0], "target", hess, True)
    further, further_outs, shapes = prepare_further_inputs(
        prep, spec.inputs, spec.gradients, inputs[2:], outs[1:], spec.broadcast_inputs)
    shape, dtype = prep.shape, prep.dtype
    if len(shape) not in spec.ndims:
        raise ValueError(spec.shape_error.format(shape=shape))
    arrays = dict(zip(spec.inputs, (prep.pred, prep.target) + further))
    given_outs = outs[1:]                   # as given (further_outs are their views)
    outs = (prep.out,) + further_outs
    in_place = [out is not None and np.shares_memory(out, arrays[name])
                for name, out in zip(spec.gradients, outs)]
    if any(in_place[1:]) and prep.weight_unchecked:
        # as for out=pred: a failing call must leave the input untouched
        assert prep.weight is not None
        check_finite(prep.weight, "sample_weight")
        prep.weight_unchecked = False
    if spec.checked is not None and any(in_place):
        _check_first(spec, arrays[spec.checked[0]])
    if spec.check_shaped is not None:
        values = spec.check_shaped(values, shape)
    # what the kernel reads: the input itself, an (N, 1) view of one value per row,
    # or (any other broadcast) the input expanded to the predictions' shape
    read = tuple(x if x.shape == shape or (len(shape) == 2 and x.shape == (shape[0], 1))
                 else np.ascontiguousarray(np.broadcast_to(x, shape)) for x in further)

    def gradient_arrays(fill: bool) -> tuple[np.ndarray, ...]:
        grads = []
        for name, out in zip(spec.gradients, outs):
            size = arrays[name].shape if name == spec.inputs[0] else \
                read[spec.inputs.index(name) - 2].shape
            g = out if out is not None and out.shape == size else np.empty(size, dtype)
            if fill:
                g.fill(0)
            grads.append(g)
        return tuple(grads)

    def returned(grads: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Each gradient in its input's own shape, a gradient read expanded summed back."""
        result = [grads[0]]
        for name, g, out, given in zip(spec.gradients[1:], grads[1:], given_outs, shapes):
            index = spec.inputs.index(name) - 2
            if g.shape != further[index].shape:
                axes = tuple(k for k, n in enumerate(further[index].shape) if n != shape[k])
                g = np.sum(g, axis=axes, dtype=np.float64, keepdims=True).astype(dtype)
                if out is not None:
                    np.copyto(out, g.reshape(given))
            result.append(g.reshape(given) if out is None else out)
        return tuple(result)

    scale = denominator = 1.0
    if reduction == "mean":
        denominator = mean_denominator(shape[0], 1 if len(shape) == 1 else shape[1],
                                       prep.weight)
        settle_weights(prep, denominator)
        if denominator == 0:                # a mean over nothing: 0 and zero gradients
            if not prep.grad:
                return LossGrad(0.0, None)
            if prep.hess:
                return LossGradHess(0.0, returned(gradient_arrays(True)),  # type: ignore
                                    np.zeros(shape, dtype))
            return LossGrad(0.0, returned(gradient_arrays(True)))  # type: ignore[arg-type]
        scale = 1.0 / denominator
    loss_out = np.empty(shape, dtype) if reduction == "none" else None
    grads = gradient_arrays(False) if prep.grad else None
    hess_out = np.empty(shape, dtype) if prep.hess else None
    total, seen = _call_kernel(spec, prep, values, loss_out, grads, hess_out, scale, read)
    if seen:
        _raise_if_bad(spec, arrays[spec.checked[0]] if spec.checked else prep.target, seen)
    settle_weights(prep, total)
    loss = loss_out if loss_out is not None else total / denominator
    result = None if grads is None else returned(grads)
    if hess_out is not None:
        return LossGradHess(loss, result, hess_out)  # type: ignore[arg-type]
    return LossGrad(loss, result)  # type: ignore[arg-type]


# --- the kernel calls: the only code that knows the kernels' argument lists ------------

def _call_kernel(spec: Loss, prep: Prepared, values: tuple[Any, ...],
                 loss_out: np.ndarray | None,
                 grad_out: np.ndarray | tuple[np.ndarray, ...] | None,
                 hess_out: np.ndarray | None, grad_scale: float,
                 further: tuple[np.ndarray, ...] = ()) -> tuple[float, int]:
    """Call the fused kernel of ``spec``: returns (the float64 total of w * loss, the
    TARGET_* bits of the values it checked, 0 for a loss without a check).

    The outputs have the predictions' shape, or are None (not computed).  The
    kernels' argument lists (see ``_elementwise_kernels.pyx.tp``)::

        kernel(pred, target, *further inputs, weight, loss_out, grad_out,
               *further gradients, hess_out, grad_scale, n_threads, *own parameters)

    on (n_rows, row_size) views, with (0,) or (0, 0) arrays for the absent
    ones; a further input of shape (N, 1) (one value per row) and its
    gradient are passed as such.  The own parameters are the declared values
    in order (delta, margin; none for mse); a per-column parameter
    (pos_weight of shape (K,)) is passed as 1.0 followed by its (K,) array,
    and a kernel that takes one (``PARAMETERS`` names it ``..._per_column``)
    gets an empty array without it.  ``grad_out`` is a tuple of one array
    per declared gradient for a loss with several (:func:`run_several`).
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
    per_row = [x.shape != shape for x in further]
    if prep.weight is None and columns is None and not any(per_row):
        view = (shape[0] * row_size, 1)     # nothing depends on the row: one flat loop
    else:
        view = (shape[0], row_size)
    views = [(shape[0], 1) if row else view for row in per_row]
    none = _NO_ROWS[prep.dtype]
    kernel = _KERNELS[spec.kernel][prep.dtype]
    weight = _NO_WEIGHT if prep.weight is None else prep.weight
    loss = none if loss_out is None else loss_out.reshape(view)
    hess = none if hess_out is None else hess_out.reshape(view)
    if isinstance(grad_out, tuple) or further:
        if grad_out is None:
            grads = [none] * len(spec.gradients)
        else:
            assert isinstance(grad_out, tuple)
            grads = [grad_out[0].reshape(view)] + [
                g.reshape(views[spec.inputs.index(name) - 2])
                for name, g in zip(spec.gradients[1:], grad_out[1:])]
    else:
        grads = [none if grad_out is None else grad_out.reshape(view)]
    result = kernel(prep.pred.reshape(view), prep.target.reshape(view),
                    *[x.reshape(v) for x, v in zip(further, views)], weight, loss, *grads,
                    hess, grad_scale, prep.n_threads, *own)
    if spec.checked is None:
        return result, 0
    return result


def _check_first(spec: Loss, values: np.ndarray) -> None:
    """Check the values the kernel checks (the targets, or gaussian_nll's var) in a pass
    of their own, before a kernel writes over an input: raise their rule's error."""
    assert spec.checked is not None
    kind = getattr(_elementwise_kernels, spec.checked[1].scan)
    seen = _KERNELS["scan_targets"][values.dtype](values.reshape(-1), kind)
    if seen:
        _raise_if_bad(spec, values, seen)


def _raise_if_bad(spec: Loss, values: np.ndarray, seen: int) -> None:
    """Raise the checked input's error if the bits the kernel saw contain a bad value.

    Probabilities ([0, 1]), counts, variances: a value outside.  Binary
    targets: a value outside {-1, 0, 1}, or both 0 and -1 (a mix that is
    ambiguous).
    """
    assert spec.checked is not None
    name, rule = spec.checked
    bad = seen & _INVALID
    if rule is SIGNS:
        bad = bad or seen & _ZERO_AND_MINUS_ONE == _ZERO_AND_MINUS_ONE
    if bad:
        rule.check(values, name)      # raises the error naming the value
        raise AssertionError(f"{rule.name} values accepted by the check were "
                             f"rejected by the kernel")


bind_elementwise(run_python, _raise_if_bad, _KERNELS, _PARAMETERS, _NO_WEIGHT, _NO_ROWS)
bind_elementwise_entries(_elementwise_kernels.ENTRIES)
bind_several(run_several_python)
run: Callable[[Loss, Any, Any, tuple[Any, ...], Any, Any, Any, Any, Any, Any],
              LossGrad | LossGradHess] = run_elementwise
"""One call of the elementwise loss ``spec`` (``params``: its parameters, in declared order):
the compiled path for the common call, :func:`run_python` for every other."""
run_several: Callable[[Loss, tuple[Any, ...], tuple[Any, ...], Any, Any, Any, Any,
                       tuple[Any, ...], Any], LossGrad | LossGradHess] = run_several_compiled
"""One call of an elementwise loss with further inputs (gaussian_nll): the compiled path
for the common call (:func:`fastloss._fastpath.run_several`), :func:`run_several_python`
for every other."""
