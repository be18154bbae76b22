"""The one validation layer shared by the fast kernels and the NumPy reference.

Every public loss calls one ``prepare_*`` function first.  It checks and
converts every argument before anything is computed or written, so that bad
input raises a clear ``ValueError`` or ``TypeError`` and leaves every input
untouched.  The conventions (see API.md):

* float32 input computes in float32, float64 in float64; any other real dtype
  (ints, bool, float16) is converted to float64.  Targets follow the
  prediction's dtype; sample and class weights are held in float64.
* integer class labels are converted to ``np.intp``; float labels are a
  ``TypeError``.
* strings, objects and complex numbers are a ``TypeError``.
"""
from __future__ import annotations

import numbers
from collections import namedtuple

import numpy as np

LossGrad = namedtuple("LossGrad", ["loss", "grad"])
LossGrad.__doc__ = """(loss, grad): the loss (a float, or an array for reduction="none")
and its gradient with respect to the prediction (None when grad=False)."""

REDUCTIONS = ("mean", "sum", "none")
_REAL_KINDS = "biuf"


class Prepared:
    """Validated, converted arguments of one call (all arrays C-contiguous)."""

    __slots__ = ("pred", "target", "weight", "reduction", "grad", "out", "n_threads",
                 "shape", "dtype")

    def __init__(self, pred, target, weight, reduction, grad, out, n_threads):
        self.pred = pred            # float32/float64 ndarray, 1-D or 2-D
        self.target = target        # same dtype and shape, or np.intp labels (N,)
        self.weight = weight        # float64 (N,) or None
        self.reduction = reduction
        self.grad = grad
        self.out = out              # the validated out array, or None
        self.n_threads = n_threads  # 0 means the OpenMP default
        self.shape = pred.shape
        self.dtype = pred.dtype


def _real_array(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def computation_dtype(arr):
    """float32 stays float32; every other real dtype computes in float64."""
    return np.dtype(np.float32) if arr.dtype.kind == "f" and arr.dtype.itemsize == 4 \
        else np.dtype(np.float64)


def as_float_array(x, name, dtype=None):
    """A C-contiguous native float array (no copy when x already is one)."""
    arr = _real_array(x, name)
    if dtype is None:
        dtype = computation_dtype(arr)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_parameter(value, name, positive=False):
    """A finite float >= 0 (margin), or > 0 when positive (delta, as in torch)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = value > 0.0 if positive else value >= 0.0
    if not ok or value == np.inf:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_n_threads(n_threads):
    if n_threads is None:
        return 0
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or an int >= 1, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be None or an int >= 1, got {n_threads}")
    return int(n_threads)


def check_same_shape(a, a_name, b, b_name):
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape, "
                         f"got {a_name}.shape={a.shape} and {b_name}.shape={b.shape}")


def check_ndim(arr, name, ndims):
    if arr.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {expected}, got shape {arr.shape}")


def as_sample_weight(sample_weight, n_rows):
    """float64 (n_rows,) weights, or None."""
    if sample_weight is None:
        return None
    weight = np.ascontiguousarray(_real_array(sample_weight, "sample_weight"), dtype=np.float64)
    if weight.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per "
                         f"sample, got sample_weight.shape={weight.shape}")
    return weight


def check_out(out, shape, dtype, pred, others):
    """out must be a writeable C-contiguous array of the gradient's shape and dtype.

    It may be ``pred`` itself (in place) but must not overlap any other input.
    """
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out must have shape {shape} and dtype {dtype}, "
                         f"got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    if np.may_share_memory(out, pred) and not (
            out.ctypes.data == pred.ctypes.data and out.strides == pred.strides):
        raise ValueError("out overlaps pred without being pred itself")
    for name, arr in others:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"out must not share memory with {name}")
    return out


def prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                        pred_name="pred", target_name="target"):
    """Arguments of an elementwise loss: pred and target of one shape, (N,) or (N, K)."""
    check_reduction(reduction)
    threads = check_n_threads(n_threads)
    pred_arr = as_float_array(pred, pred_name)
    check_ndim(pred_arr, pred_name, (1, 2))
    target_arr = as_float_array(target, target_name, pred_arr.dtype)
    check_same_shape(pred_arr, pred_name, target_arr, target_name)
    weight = as_sample_weight(sample_weight, pred_arr.shape[0])
    out = check_out(out, pred_arr.shape, pred_arr.dtype, pred_arr,
                    [(target_name, target_arr), ("sample_weight", weight)])
    return Prepared(pred_arr, target_arr, weight, reduction, bool(grad), out, threads)


def as_pos_weight(pos_weight, n_columns):
    """None, a scalar or a (K,) array -> float64 (K,) array."""
    if pos_weight is None:
        return None
    pw = np.ascontiguousarray(_real_array(pos_weight, "pos_weight"), dtype=np.float64)
    if pw.ndim == 0:
        return np.full(n_columns, float(pw))
    if pw.shape != (n_columns,):
        raise ValueError(f"pos_weight must be a scalar or have shape ({n_columns},), "
                         f"got pos_weight.shape={pw.shape}")
    return pw


def binary_targets(target, name):
    """Hinge targets: all in {-1, +1} or all in {0, 1} (0 meaning -1) -> +-1."""
    is_pm = (target == 1) | (target == -1)
    if is_pm.all():
        return target
    is_01 = (target == 0) | (target == 1)
    if is_01.all():
        return 2 * target - 1
    outside = ~(is_pm | is_01)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"{name} must be all in {{-1, +1}} or all in {{0, 1}}; "
                         f"{name}[{i}] = {target[i]}")
    i = int(np.argmax(target == 0))
    raise ValueError(f"{name} mixes -1, 0 and 1, which is ambiguous: it must be all in "
                     f"{{-1, +1}} or all in {{0, 1}}; {name}[{i}] = {target[i]}")


def mean_denominator(prep, row_size):
    """The "mean" divisor: sum_i w_i * row_size (N * row_size without weights)."""
    n_rows = prep.shape[0]
    if prep.weight is None:
        return float(n_rows * row_size)
    return float(np.sum(prep.weight)) * row_size


def prepare_hinge(scores, target, sample_weight, reduction, grad, out, n_threads):
    """Binary hinge arguments: 1-D scores, targets mapped to -1/+1."""
    prep = prepare_elementwise(scores, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="scores")
    if prep.pred.ndim != 1:
        raise ValueError(f"scores must be 1-D for a binary hinge loss, got shape "
                         f"{prep.pred.shape}; use multiclass_hinge for (N, C) scores")
    prep.target = binary_targets(prep.target, "target")
    return prep
