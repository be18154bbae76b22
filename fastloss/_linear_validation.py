"""Validation of ``linear_cross_entropy``'s arguments, shared by the fast and reference twins.

Built on the checks of :mod:`fastloss._checks` and :mod:`fastloss._targets`:
every argument is checked and converted before anything is computed, so that
bad input raises a clear ``ValueError`` or ``TypeError`` and no input is
modified.  The computation dtype is float32 when hidden, weight and bias are
all float32, float64 otherwise (as NumPy's matmul would promote them).
"""
from __future__ import annotations

import numbers
from collections import namedtuple

import numpy as np

from fastloss._checks import (CLASS_WEIGHT, IGNORE_INDEX, LABEL_SMOOTHING, as_any_array,
                              check_cross_entropy_extras,
                              as_float_array, as_sample_weight, check_finite, check_flag,
                              check_n_threads, check_reduction)
from fastloss._reduction import mean_denominator
from fastloss._targets import as_labels

LinearCrossEntropyGrad = namedtuple("LinearCrossEntropyGrad",
                                    ["loss", "grad_hidden", "grad_weight", "grad_bias"])
LinearCrossEntropyGrad.__doc__ = """(loss, grad_hidden, grad_weight, grad_bias): the loss (a float,
or an array for reduction="none") and its gradients with respect to hidden, weight and bias
(grad_bias None without a bias; every gradient None when grad=False)."""


class PreparedLinear:
    """Validated, converted arguments of one linear_cross_entropy call (C-contiguous arrays)."""

    __slots__ = ("hidden", "weight", "bias", "labels", "class_weight", "ignore_index",
                 "label_smoothing", "z_loss", "softcap", "sample_weight", "reduction", "grad",
                 "chunk_rows", "n_threads", "dtype")


def _real_2d(x, name, shape_name):
    arr = as_any_array(x, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D {shape_name}, got shape {arr.shape}")
    return arr


def check_chunk_rows(chunk_rows):
    if chunk_rows is None:
        return None
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral):
        raise TypeError(f"chunk_rows must be None or an int >= 1, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be None or an int >= 1, got {chunk_rows}")
    return int(chunk_rows)


def prepare_linear(hidden, weight, target, bias, class_weight, ignore_index, label_smoothing,
                   z_loss, softcap, sample_weight, reduction, grad, chunk_rows, n_threads):
    """Check and convert every argument of linear_cross_entropy; see its docstring."""
    prep = PreparedLinear()
    prep.grad = check_flag(grad, "grad")
    check_reduction(reduction)
    prep.reduction = reduction
    prep.n_threads = check_n_threads(n_threads)
    prep.chunk_rows = check_chunk_rows(chunk_rows)
    prep.ignore_index = IGNORE_INDEX.check(ignore_index)
    prep.label_smoothing = LABEL_SMOOTHING.check(label_smoothing)
    prep.z_loss, prep.softcap = check_cross_entropy_extras(z_loss, softcap)

    hidden_arr = _real_2d(hidden, "hidden", "(N, D)")
    weight_arr = _real_2d(weight, "weight", "(V, D), as torch.nn.Linear's weight")
    n_rows, n_features = hidden_arr.shape
    n_classes = weight_arr.shape[0]
    if weight_arr.shape[1] != n_features:
        raise ValueError(f"hidden and weight must have the same number of columns D "
                         f"(logits = hidden @ weight.T), got hidden.shape={hidden_arr.shape} "
                         f"and weight.shape={weight_arr.shape}")
    bias_arr = None
    if bias is not None:
        bias_arr = as_any_array(bias, "bias")
        if bias_arr.dtype.kind not in "biuf":
            raise TypeError(f"bias must hold real numbers, got dtype {bias_arr.dtype}")
        if bias_arr.shape != (n_classes,):
            raise ValueError(f"bias must have shape ({n_classes},), one per row of weight, "
                             f"got bias.shape={bias_arr.shape} and "
                             f"weight.shape={weight_arr.shape}")
    dtypes = [hidden_arr.dtype, weight_arr.dtype] + ([] if bias_arr is None else [bias_arr.dtype])
    single = all(dt == np.float32 for dt in dtypes)
    prep.dtype = np.dtype(np.float32 if single else np.float64)
    prep.hidden = as_float_array(hidden_arr, "hidden", prep.dtype)
    prep.weight = as_float_array(weight_arr, "weight", prep.dtype)
    prep.bias = None if bias_arr is None else as_float_array(bias_arr, "bias", prep.dtype)

    target_arr = as_any_array(target, "target")
    if target_arr.ndim != 1:
        raise ValueError(f"target must be ({n_rows},) integer class labels, one per row of "
                         f"hidden, got target.shape={target_arr.shape}")
    prep.labels = as_labels(target_arr, n_rows, n_classes, prep.ignore_index)
    prep.sample_weight = as_sample_weight(sample_weight, n_rows)
    prep.class_weight = CLASS_WEIGHT.check(class_weight, n_classes)
    if prep.sample_weight is not None:
        check_finite(prep.sample_weight, "sample_weight")
    return prep


def label_mean_denominator(prep):
    """The "mean" divisor: sum_i s_i w_{y_i} over the rows not ignored (torch's weighted mean),
    the one of every loss (fastloss._reduction.mean_denominator)."""
    return mean_denominator(prep.labels.shape[0], 1, prep.sample_weight, labels=prep.labels,
                            class_weight=prep.class_weight, ignore_index=prep.ignore_index)
