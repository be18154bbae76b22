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

LossGradHess = namedtuple("LossGradHess", ["loss", "grad", "hess"])
LossGradHess.__doc__ = """(loss, grad, hess): as LossGrad, plus the diagonal of the Hessian
of the returned loss with respect to the prediction (returned when hess=True)."""

REDUCTIONS = ("mean", "sum", "none")
_MAX_THREADS = 2**31 - 1
_REAL_KINDS = "biuf"


class Prepared:
    """Validated, converted arguments of one call (all arrays C-contiguous)."""

    __slots__ = ("pred", "target", "weight", "reduction", "grad", "hess", "out", "n_threads",
                 "shape", "dtype", "weight_unchecked")

    def __init__(self, pred, target, weight, reduction, grad, out, n_threads, hess=False):
        self.pred = pred            # float32/float64 ndarray, 1-D or 2-D
        self.target = target        # same dtype and shape, or np.intp labels (N,)
        self.weight = weight        # float64 (N,) or None
        self.reduction = reduction
        self.grad = grad
        self.hess = hess            # also compute the Hessian's diagonal (implies grad)
        self.out = out              # the validated out array, or None
        self.n_threads = n_threads  # 0 means the OpenMP default
        self.shape = pred.shape
        self.dtype = pred.dtype
        # True when the sample weights' finiteness is left to the caller (see
        # defer_weight_check in prepare_elementwise)
        self.weight_unchecked = False


def _real_array(x, name):
    arr = as_any_array(x, name)
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def computation_dtype(arr):
    """float32 stays float32; every other real dtype computes in float64."""
    return np.dtype(np.float32) if arr.dtype.kind == "f" and arr.dtype.itemsize == 4 \
        else np.dtype(np.float64)


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name, dtype=None):
    """A C-contiguous native float array (no copy when x already is one)."""
    if (type(x) is np.ndarray and x.dtype in _NATIVE_FLOATS
            and (dtype is None or x.dtype == dtype) and x.flags.c_contiguous):
        return x        # the common case, without the conversions' overhead
    arr = _real_array(x, name)
    if dtype is None:
        dtype = computation_dtype(arr)
    return np.asarray(arr, dtype=dtype, order="C")


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
    # The kernels take a C int and never use more threads than they have chunks.
    return min(int(n_threads), _MAX_THREADS)


def check_flag(value, name):
    """A True/False option (Python or NumPy bool), as a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_hess(hess, grad):
    """hess must be a bool, and True only with grad=True (the Hessian comes with the gradient)."""
    hess = check_flag(hess, "hess")
    if hess and not grad:
        raise ValueError("hess=True needs grad=True: the Hessian's diagonal is computed "
                         "with the gradient")
    return hess


def check_same_shape(a, a_name, b, b_name):
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape, "
                         f"got {a_name}.shape={a.shape} and {b_name}.shape={b.shape}")


def check_ndim(arr, name, ndims):
    if arr.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {expected}, got shape {arr.shape}")


def check_finite(values, name):
    """A ValueError naming the first NaN or infinite element of a weight array.

    Negative weights stay allowed, as in scikit-learn.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must hold finite numbers; {name}[{i}] = {values[i]}")


def check_out_wanted(out, grad):
    """out receives the gradient: with grad=False nothing would be written to it."""
    if out is not None and not grad:
        raise ValueError("out receives the gradient, so it cannot be given with grad=False "
                         "(nothing would be written to it)")


def settle_weights(prep, value):
    """After a kernel call or a "mean" denominator: raise if the sample weights are not finite.

    When the checks of the sample weights were deferred (``defer_weight_check``),
    a NaN or infinite weight shows as a non-finite total (w * loss, or the
    weights' sum); only then are the weights scanned, to name the first bad one.
    A NaN prediction also makes the total NaN: the scan then finds nothing.
    """
    if prep.weight_unchecked and not np.isfinite(value):
        check_finite(prep.weight, "sample_weight")


def as_sample_weight(sample_weight, n_rows):
    """float64 (n_rows,) weights, or None."""
    if sample_weight is None:
        return None
    weight = np.asarray(_real_array(sample_weight, "sample_weight"), dtype=np.float64,
                        order="C")
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


def writes_over_input(prep):
    """True when the gradient goes over the predictions (out=pred)."""
    return prep.out is not None and np.shares_memory(prep.out, prep.pred)


def check_weights_or_defer(prep, defer):
    """Check the sample weights now, or leave it to settle_weights (no extra pass).

    Deferring is allowed only when the gradient does not overwrite an input
    (a failing call must leave every input untouched) and when every row's
    weight reaches the kernel's total (no row is skipped as ignored).
    """
    if prep.weight is None:
        return prep
    if defer and not writes_over_input(prep):
        prep.weight_unchecked = True
    else:
        check_finite(prep.weight, "sample_weight")
    return prep


def prepare_elementwise(pred, target, sample_weight, reduction, grad, out, n_threads,
                        pred_name="pred", target_name="target", hess=False,
                        defer_weight_check=False):
    """Arguments of an elementwise loss: pred and target of one shape, (N,) or (N, K).

    With ``defer_weight_check`` the caller checks the sample weights' finiteness
    with :func:`settle_weights` after its kernel (see :func:`check_weights_or_defer`).
    """
    grad = check_flag(grad, "grad")
    hess = check_hess(hess, grad)
    check_out_wanted(out, grad)
    check_reduction(reduction)
    threads = check_n_threads(n_threads)
    pred_arr = as_float_array(pred, pred_name)
    check_ndim(pred_arr, pred_name, (1, 2))
    target_arr = as_float_array(target, target_name, pred_arr.dtype)
    check_same_shape(pred_arr, pred_name, target_arr, target_name)
    weight = as_sample_weight(sample_weight, pred_arr.shape[0])
    out = check_out(out, pred_arr.shape, pred_arr.dtype, pred_arr,
                    [(target_name, target_arr), ("sample_weight", weight)])
    prep = Prepared(pred_arr, target_arr, weight, reduction, grad, out, threads, hess)
    return check_weights_or_defer(prep, defer_weight_check)


def as_pos_weight(pos_weight, n_columns):
    """None, a scalar or a (K,) array -> float64 (K,) array."""
    if pos_weight is None:
        return None
    # np.asarray, not np.ascontiguousarray: the latter turns a scalar into shape (1,)
    pw = np.asarray(_real_array(pos_weight, "pos_weight"), dtype=np.float64)
    check_finite(pw.reshape(-1), "pos_weight")
    if pw.ndim == 0:
        return np.full(n_columns, float(pw))
    pw = np.ascontiguousarray(pw)
    if pw.shape != (n_columns,):
        raise ValueError(f"pos_weight must be a scalar or have shape ({n_columns},), "
                         f"got pos_weight.shape={pw.shape}")
    return pw


def check_probabilities(target, name, at_most_one):
    """Probability targets: every value >= 0 (and <= 1 when at_most_one), none NaN or infinite.

    A ValueError names the first bad position and value.  Binary cross-entropy's
    targets lie in [0, 1]; the softmax family's probability targets are >= 0.
    """
    with np.errstate(invalid="ignore"):
        good = (target >= 0) & ((target <= 1) if at_most_one else np.isfinite(target))
    if good.all():
        return target
    position = np.unravel_index(int(np.argmin(good.reshape(-1))), target.shape)
    where = ", ".join(str(int(k)) for k in position)
    allowed = "probabilities in [0, 1]" if at_most_one else "finite probabilities >= 0"
    raise ValueError(f"{name} must hold {allowed}; {name}[{where}] = {str(target[position])}")


def check_nonnegative(values, name, what, finite):
    """Every value >= 0 (and finite, when ``finite``): a ValueError names the first bad
    position and value, calling the values ``what`` ("counts", "variances").

    NaN fails the check when ``finite``; otherwise it passes (a predicted
    variance's NaN propagates to the loss, as a prediction's does).
    """
    with np.errstate(invalid="ignore"):
        good = (values >= 0) & np.isfinite(values) if finite else ~(values < 0)
    if good.all():
        return values
    position = np.unravel_index(int(np.argmin(good.reshape(-1))), values.shape)
    where = ", ".join(str(int(k)) for k in position)
    allowed = f"finite {what} >= 0" if finite else f"{what} >= 0"
    raise ValueError(f"{name} must hold {allowed}; {name}[{where}] = {str(values[position])}")


def as_variance(var, mean_shape, dtype):
    """gaussian_nll's var: a C-contiguous array of the computation dtype, and the shape
    it takes to broadcast against the mean's (torch's gaussian_nll_loss rules).

    var may have the mean's shape; one dimension fewer (the mean's shape without
    its last dimension: one variance for each row of the last axis); or the
    mean's number of dimensions with exactly one dimension of size 1 where the
    mean's is larger (e.g. (N, 1) or (1, K) for an (N, K) mean).  Anything else
    is a ValueError naming both shapes.  Returns (var, broadcast shape).
    """
    arr = as_float_array(var, "var", dtype)
    shape = arr.shape
    if shape == mean_shape:
        return arr, shape
    if shape == mean_shape[:-1]:
        return arr, shape + (1,)
    mismatched = [v for m, v in zip(mean_shape, shape) if m != v]
    if len(shape) == len(mean_shape) and mismatched == [1]:
        return arr, shape
    raise ValueError(f"var must have the shape of mean {mean_shape}, that shape with one "
                     f"dimension of size 1, or one dimension fewer {mean_shape[:-1]}; "
                     f"got var.shape={shape}")


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
    """The "mean" divisor: sum_i w_i * row_size (N * row_size without weights).

    The weights are summed with compensation, by the kernels (a plain or
    pairwise sum of many weights can be off by several ulps).
    """
    n_rows = prep.shape[0]
    if prep.weight is None:
        return float(n_rows * row_size)
    from fastloss._dispatch import multiclass_kernels
    return multiclass_kernels.weight_sum(prep.weight) * row_size


def prepare_hinge(scores, target, sample_weight, reduction, grad, out, n_threads,
                  map_targets=True, defer_weight_check=False):
    """Binary hinge arguments: 1-D scores, targets mapped to -1/+1.

    With ``map_targets=False`` the targets are left as given and unchecked:
    the caller (a kernel that reads 0 as -1 and reports the values it met)
    must call :func:`binary_targets` to raise the error when they are invalid.
    """
    prep = prepare_elementwise(scores, target, sample_weight, reduction, grad, out, n_threads,
                               pred_name="scores", defer_weight_check=defer_weight_check)
    if prep.pred.ndim != 1:
        raise ValueError(f"scores must be 1-D for a binary hinge loss, got shape "
                         f"{prep.pred.shape}; use multiclass_hinge for (N, C) scores")
    if map_targets:
        prep.target = binary_targets(prep.target, "target")
    return prep


# --- multiclass ------------------------------------------------------------

HINGE_KINDS = ("weston_watkins", "crammer_singer")


class PreparedMulticlass(Prepared):
    """Validated arguments of a multiclass loss: (N, C) logits and labels or probabilities.

    ``target`` is an ``np.intp`` (N,) label array when ``has_labels``, else an
    (N, C) probability array of the logits' dtype.
    """

    __slots__ = ("has_labels", "class_weight", "ignore_index", "label_smoothing")


def as_any_array(x, name):
    """np.asarray(x), with a ValueError naming the argument for ragged sequences."""
    try:
        return np.asarray(x)
    except ValueError as error:
        raise ValueError(f"{name} could not be converted to an array: {error}") from None


def check_logits(arr, name):
    check_ndim(arr, name, (2,))


def check_ignore_index(ignore_index):
    """None (no class is ignored) or an int, as torch's ignore_index."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be None or an int, got {ignore_index!r}")
    return int(ignore_index)


def check_label_smoothing(label_smoothing):
    if not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool):
        raise TypeError(f"label_smoothing must be a real number, "
                        f"got {type(label_smoothing).__name__}")
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {value}")
    return value


def check_kind(kind):
    if kind not in HINGE_KINDS:
        raise ValueError(f"kind must be one of {HINGE_KINDS}, got {kind!r}")
    return kind


def as_labels(target, n_rows, n_classes, ignore_index=None, name="target"):
    """Integer class labels (N,) of any integer dtype -> np.intp.

    Every label must lie in [0, n_classes) or equal ``ignore_index``; the
    first one that does not is named in the ValueError.
    """
    arr = as_any_array(target, name)
    if arr.dtype.kind in "fc" or arr.dtype.kind == "b":
        if arr.size > 0 or arr.dtype.kind == "b":
            raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}: "
                            f"pass integers (e.g. {name}.astype(int))")
        arr = arr.astype(np.intp)       # an empty list arrives as float64
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.shape != (n_rows,):
        raise ValueError(f"{name} must have shape ({n_rows},), one label per row of the "
                         f"logits, or ({n_rows}, {n_classes}) probabilities; "
                         f"got {name}.shape={arr.shape}")
    if arr.size and not (arr.min() >= 0 and arr.max() < n_classes):
        bad = (arr < 0) | (arr >= n_classes)
        if ignore_index is not None:
            bad &= arr != ignore_index
        if bad.any():
            i = int(np.argmax(bad))
            allowed = f"[0, {n_classes})"
            if ignore_index is not None:
                allowed += f" or ignore_index={ignore_index}"
            raise ValueError(f"{name} must hold class labels in {allowed}; "
                             f"{name}[{i}] = {arr[i]}")
    return np.ascontiguousarray(arr, dtype=np.intp)


def as_class_weight(class_weight, n_classes):
    """None or (C,) weights -> float64 (C,) or None."""
    if class_weight is None:
        return None
    # np.asarray, not np.ascontiguousarray, which would turn a scalar into shape (1,)
    weight = np.asarray(_real_array(class_weight, "class_weight"), dtype=np.float64, order="C")
    if weight.shape != (n_classes,):
        raise ValueError(f"class_weight must have shape ({n_classes},), one weight per class, "
                         f"got class_weight.shape={weight.shape}")
    check_finite(weight, "class_weight")
    return weight


def prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads, *,
                       target_kind="either", class_weight=None, ignore_index=None,
                       label_smoothing=0.0, pred_name="logits", hess=False,
                       defer_weight_check=False):
    """Arguments of a multiclass loss.

    ``target_kind`` is "labels" (an (N,) integer array), "probabilities" (an
    (N, C) array like the logits) or "either" (decided by the target's
    number of dimensions).  ``defer_weight_check`` as in
    :func:`prepare_elementwise` (not with ignore_index: an ignored row's
    weight never reaches the kernel's total); it also leaves the check of
    probability targets (>= 0, not NaN or infinite) to the kernel, which
    reports them in its own pass, except when the gradient overwrites the logits.
    """
    grad = check_flag(grad, "grad")
    hess = check_hess(hess, grad)
    check_out_wanted(out, grad)
    check_reduction(reduction)
    threads = check_n_threads(n_threads)
    ignore_index = check_ignore_index(ignore_index)
    label_smoothing = check_label_smoothing(label_smoothing)
    pred_arr = as_float_array(logits, pred_name)
    check_logits(pred_arr, pred_name)
    n_rows, n_classes = pred_arr.shape
    target = as_any_array(target, "target")
    target_ndim = target.ndim
    if target_kind == "either":
        target_kind = "probabilities" if target_ndim == 2 else "labels"
    if target_kind == "labels":
        if target_ndim == 2 and target.shape == pred_arr.shape:
            raise ValueError(f"target must be ({n_rows},) integer class labels for this loss, "
                             f"got shape {target.shape}")
        target_arr = as_labels(target, n_rows, n_classes, ignore_index)
    else:
        target_arr = as_float_array(target, "target", pred_arr.dtype)
        check_same_shape(pred_arr, pred_name, target_arr, "target")
        if ignore_index is not None:
            raise ValueError("ignore_index applies to integer labels only, "
                             "not to probability targets")
    weight = as_sample_weight(sample_weight, n_rows)
    class_weight = as_class_weight(class_weight, n_classes)
    out = check_out(out, pred_arr.shape, pred_arr.dtype, pred_arr,
                    [("target", target_arr), ("sample_weight", weight),
                     ("class_weight", class_weight)])
    prep = PreparedMulticlass(pred_arr, target_arr, weight, reduction, grad, out, threads,
                              hess)
    prep.has_labels = target_kind == "labels"
    prep.class_weight = class_weight
    prep.ignore_index = ignore_index
    prep.label_smoothing = label_smoothing
    if not prep.has_labels and (not defer_weight_check or writes_over_input(prep)):
        # (else the kernel checks the probabilities in its own pass)
        check_probabilities(target_arr, "target", at_most_one=False)
    return check_weights_or_defer(prep, defer_weight_check and ignore_index is None)


def prepare_rows(x, out, n_threads, out_ndim):
    """Arguments of a row-wise utility (logsumexp, softmax, log_softmax).

    Returns the 2-D float array, the validated ``out`` ((N,) when
    ``out_ndim`` is 1, else (N, C); it may be x itself) and the thread count.
    """
    threads = check_n_threads(n_threads)
    arr = as_float_array(x, "x")
    check_ndim(arr, "x", (2,))
    shape = arr.shape[:1] if out_ndim == 1 else arr.shape
    if out is not None and out_ndim == 1 and np.may_share_memory(out, arr):
        raise ValueError("out must not share memory with x")
    out = check_out(out, shape, arr.dtype, arr, [])
    return arr, out, threads
