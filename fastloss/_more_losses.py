"""The fast losses beyond the seed (API.md "More losses"): validation, then one fused kernel call.

Temporary placement (issue #15): ``fastloss`` exports these until the registry
(issue #12) declares each loss once.  Each function has the signature,
semantics and docstring of its twin in :mod:`fastloss._more_reference`; the
work is done by the elementwise kernels through ``_elementwise._run``.  The
checks of targets and variances run inside the kernels (a bit raised in the
same pass); when the gradient overwrites an input they run first.
"""
from __future__ import annotations

import numpy as np

from fastloss import _more_reference as reference
from fastloss._dispatch import elementwise_kernels as _kernels
from fastloss._elementwise import _KERNELS, _run, same_doc_as
from fastloss._validation import (as_variance, check_finite, check_flag, check_parameter,
                                  check_probabilities, prepare_elementwise, writes_over_input)

__all__ = reference.__all__


def _checked_by(check_values, name):
    """A function of the kernel's seen bits that raises the validation error."""
    def check(seen):
        if seen & _kernels.TARGET_INVALID:
            check_values()                   # raises, naming the first bad value
            raise AssertionError(f"the {name} check accepted values the kernel rejected")
    return check


def _scan_first(values, kind, check_values):
    """Check values in a pass of their own (before a kernel writes over an input)."""
    flat = values.reshape(-1)
    if _KERNELS["scan_targets"][values.dtype](flat, kind) & _kernels.TARGET_INVALID:
        check_values()


@same_doc_as(reference.l1)
def l1(pred, target, *, sample_weight=None, reduction="mean", grad=True, hess=False,
       out=None, n_threads=None):
    reference.no_hessian(hess, "l1")
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               defer_weight_check=True)
    return _run("l1", prep)


@same_doc_as(reference.smooth_l1)
def smooth_l1(pred, target, *, beta=1.0, sample_weight=None, reduction="mean", grad=True,
              hess=False, out=None, n_threads=None):
    beta = check_parameter(beta, "beta")
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess, defer_weight_check=True)
    return _run("smooth_l1", prep, beta)


@same_doc_as(reference.log_cosh)
def log_cosh(pred, target, *, sample_weight=None, reduction="mean", grad=True, hess=False,
             out=None, n_threads=None):
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess, defer_weight_check=True)
    return _run("log_cosh", prep)


@same_doc_as(reference.pinball)
def pinball(pred, target, *, quantile=0.5, sample_weight=None, reduction="mean", grad=True,
            hess=False, out=None, n_threads=None):
    reference.no_hessian(hess, "pinball")
    quantile = reference.check_quantile(quantile)
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               defer_weight_check=True)
    return _run("pinball", prep, quantile)


@same_doc_as(reference.poisson_nll)
def poisson_nll(pred, target, *, log_input=True, full=False, eps=1e-8, sample_weight=None,
                reduction="mean", grad=True, hess=False, out=None, n_threads=None):
    log_input = check_flag(log_input, "log_input")
    full = check_flag(full, "full")
    eps = check_parameter(eps, "eps")
    prep = prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                               hess=hess, defer_weight_check=True)

    def check_targets():
        reference.counts_check(prep.target)

    if writes_over_input(prep):
        _scan_first(prep.target, _kernels.NONNEGATIVE_FINITE, check_targets)
    return _run("poisson_nll", prep, log_input, full, eps,
                check=_checked_by(check_targets, "count"))


@same_doc_as(reference.sigmoid_focal_loss)
def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, sample_weight=None,
                       reduction="mean", grad=True, hess=False, out=None, n_threads=None):
    alpha = reference.check_alpha(alpha)
    gamma = check_parameter(gamma, "gamma")
    prep = prepare_elementwise(logits, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="logits", hess=hess, defer_weight_check=True)

    def check_targets():
        check_probabilities(prep.target, "target", at_most_one=True)

    if writes_over_input(prep):
        _scan_first(prep.target, _kernels.UNIT_TARGETS, check_targets)
    return _run("sigmoid_focal_loss", prep, alpha, gamma,
                check=_checked_by(check_targets, "probability"))


@same_doc_as(reference.gaussian_nll)
def gaussian_nll(mean, target, var, *, full=False, eps=1e-6, sample_weight=None,
                 reduction="mean", grad=True, hess=False, out=None, out_var=None,
                 n_threads=None):
    full = check_flag(full, "full")
    eps = check_parameter(eps, "eps")
    prep = prepare_elementwise(mean, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="mean", hess=hess, defer_weight_check=True)
    var, shape = as_variance(var, prep.shape, prep.dtype)
    out_var = reference.check_out_var(out_var, var, prep.grad,
                                      [("mean", prep.pred), ("target", prep.target),
                                       ("sample_weight", prep.weight), ("out", prep.out)])
    var_in_place = out_var is not None and np.shares_memory(out_var, var)
    if var_in_place and prep.weight_unchecked:
        # (as for out=mean: a failing call must leave var untouched)
        check_finite(prep.weight, "sample_weight")
        prep.weight_unchecked = False
    in_place = var_in_place or writes_over_input(prep)

    def check_var():
        reference.variances_check(var)

    per_row = len(shape) == 2 and shape == (prep.shape[0], 1)
    if shape == prep.shape or per_row:
        if in_place:
            _scan_first(var, _kernels.NONNEGATIVE, check_var)
        return _run("gaussian_nll", prep, full, eps, more=[(var, out_var)],
                    check=_checked_by(check_var, "variance"))
    # var broadcast over the rows, or one variance for a 1-D mean: the kernel
    # reads it expanded to the mean's shape, and its gradient is summed back.
    check_var()
    expanded = np.ascontiguousarray(np.broadcast_to(var.reshape(shape), prep.shape))
    result = _run("gaussian_nll", prep, full, eps, more=[(expanded, None)],
                  check=_checked_by(check_var, "variance"))
    if not prep.grad:
        return result
    grad_mean, grad_expanded = result.grad
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and prep.shape[k] != 1)
    grad_var = np.sum(grad_expanded, axis=axes, dtype=np.float64).reshape(var.shape)
    if out_var is None:
        grad_var = grad_var.astype(prep.dtype)
    else:
        np.copyto(out_var, grad_var)
        grad_var = out_var
    return result._replace(grad=(grad_mean, grad_var))

