"""Argument checks shared by the fast faces and the NumPy reference.

Design: every public loss checks and converts all of its arguments before
anything is computed or written, so that bad input raises a clear
``ValueError`` or ``TypeError`` and leaves every input untouched.  This
module holds

* the checks of single arguments (flags, ``reduction``, ``n_threads``,
  ``out``, shapes, sample weights, float conversion);
* the loss parameters as *data* (``Real``, ``Flag``, ``Choice``,
  ``OptionalIndex``, ``Weights``): a kind, a default and bounds that the
  registry declares once per loss, whose ``check`` method is the one place
  their rule is applied (and where a compiled call path can read the rule);
* the ``prepare_*`` functions that run these checks in a fixed order and
  return a ``Prepared`` record of the converted arguments, made whole and
  never changed afterwards.

Targets (labels, probabilities, binary targets) are checked in
:mod:`fastloss._targets`; the "mean" divisor and the reductions live in
:mod:`fastloss._reduction`.

The conventions: float32 input computes in float32, float64 in float64; any
other real dtype (ints, bool, float16) is converted to float64.  Targets
follow the prediction's dtype; sample and class weights are held in float64.
Strings, objects and complex numbers are a ``TypeError``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

from fastloss._targets import as_labels, check_label_range, check_probabilities

REDUCTIONS = ("mean", "sum", "none")
_MAX_THREADS = 2**31 - 1
_REAL_KINDS = "biuf"
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# --- single arguments -----------------------------------------------------------

def as_any_array(x: Any, name: str) -> np.ndarray:
    """np.asarray(x), with a ValueError naming the argument for ragged sequences."""
    try:
        return np.asarray(x)
    except ValueError as error:
        raise ValueError(f"{name} could not be converted to an array: {error}") from None


def real_array(x: Any, name: str) -> np.ndarray:
    """x as an array of real numbers (bool, integers or floats); a TypeError otherwise."""
    arr = as_any_array(x, name)
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def computation_dtype(arr: np.ndarray) -> np.dtype:
    """float32 stays float32; every other real dtype computes in float64."""
    return np.dtype(np.float32) if arr.dtype.kind == "f" and arr.dtype.itemsize == 4 \
        else np.dtype(np.float64)


def as_float_array(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """A C-contiguous native float array (no copy when x already is one)."""
    if (type(x) is np.ndarray and x.dtype in _NATIVE_FLOATS
            and (dtype is None or x.dtype == dtype) and x.flags.c_contiguous):
        return x        # the common case, without the conversions' overhead
    arr = real_array(x, name)
    if dtype is None:
        dtype = computation_dtype(arr)
    return np.asarray(arr, dtype=dtype, order="C")


def check_reduction(reduction: Any) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_n_threads(n_threads: Any) -> int:
    """The kernels' thread count: 0 (the OpenMP default) for None, else an int >= 1."""
    if n_threads is None:
        return 0
    if type(n_threads) is int and n_threads >= 1:     # the common case, without isinstance
        return min(n_threads, _MAX_THREADS)
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or an int >= 1, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be None or an int >= 1, got {n_threads}")
    # The kernels take a C int and never use more threads than they have chunks.
    return min(int(n_threads), _MAX_THREADS)


def check_flag(value: Any, name: str) -> bool:
    """A True/False option (Python or NumPy bool), as a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_hess(hess: Any, grad: bool) -> bool:
    """hess must be a bool, and True only with grad=True (the Hessian comes with the gradient)."""
    hess = check_flag(hess, "hess")
    if hess and not grad:
        raise ValueError("hess=True needs grad=True: the Hessian's diagonal is computed "
                         "with the gradient")
    return hess


def check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape, "
                         f"got {a_name}.shape={a.shape} and {b_name}.shape={b.shape}")


def check_ndim(arr: np.ndarray, name: str, ndims: tuple[int, ...]) -> None:
    if arr.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {expected}, got shape {arr.shape}")


def check_finite(values: np.ndarray, name: str) -> None:
    """A ValueError naming the first NaN or infinite element of a weight array.

    Negative weights stay allowed, as in scikit-learn.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must hold finite numbers; {name}[{i}] = {values[i]}")


def refuse_hess(hess: Any, name: str) -> None:
    """hess=True is a ValueError for a loss without a Hessian that takes ``hess``
    (a piecewise-linear loss: its second derivative is 0 or undefined)."""
    if check_flag(hess, "hess"):
        raise ValueError(f"{name} is piecewise linear: it has no Hessian to offer "
                         f"(hess=True is not supported)")


def check_out_wanted(out: Any, grad: bool, name: str = "out") -> None:
    """out receives the gradient: with grad=False nothing would be written to it."""
    if out is not None and not grad:
        raise ValueError(f"{name} receives the gradient, so it cannot be given with "
                         f"grad=False (nothing would be written to it)")


def as_sample_weight(sample_weight: Any, n_rows: int) -> np.ndarray | None:
    """float64 (n_rows,) weights, or None."""
    if sample_weight is None:
        return None
    weight = np.asarray(real_array(sample_weight, "sample_weight"), dtype=np.float64,
                        order="C")
    if weight.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per "
                         f"sample, got sample_weight.shape={weight.shape}")
    return weight


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype, pred: np.ndarray,
              others: list[tuple[str, np.ndarray | None]], name: str = "out",
              pred_name: str = "pred") -> np.ndarray | None:
    """out must be a writeable C-contiguous array of the gradient's shape and dtype.

    It may be ``pred`` itself (in place) but must not overlap any other input.
    ``name`` and ``pred_name`` name the two in the errors (out_var and var for
    the gradient of a second input).
    """
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"{name} must have shape {shape} and dtype {dtype}, "
                         f"got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if np.may_share_memory(out, pred) and not (
            out.ctypes.data == pred.ctypes.data and out.strides == pred.strides):
        raise ValueError(f"{name} overlaps {pred_name} without being {pred_name} itself")
    for other, arr in others:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{name} must not share memory with {other}")
    return out


# --- loss parameters, declared as data ---------------------------------------------

class Param:
    """A keyword-only parameter of a loss: its name, default and rule, as data.

    ``kind`` names the rule (one subclass each); the other fields are the
    rule's data.  ``check(value)`` returns the value the computation uses or
    raises the parameter's TypeError or ValueError.  Read-only once made
    (plain classes with slots: a dataclass or named tuple per rule would
    cost a millisecond of every import).
    """

    __slots__ = ("name", "default")
    kind = ""
    name: str
    default: Any

    def _set(self, **fields: Any) -> None:
        for field, value in fields.items():
            object.__setattr__(self, field, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the parameter rule {self.name} is read-only")

    def __repr__(self) -> str:
        fields = [field for cls in reversed(type(self).__mro__)
                  for field in getattr(cls, "__slots__", ())]
        shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in fields)
        return f"{type(self).__name__}({shown})"

    def check(self, value: Any) -> Any:
        raise NotImplementedError


class Real(Param):
    """A finite real number within bounds (``low``/``high``; ``*_open`` excludes the bound)."""

    __slots__ = ("low", "high", "low_open", "high_open")
    kind = "real"
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool

    def __init__(self, name: str, default: Any, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> None:
        self._set(name=name, default=default, low=low, high=high, low_open=low_open,
                  high_open=high_open)

    def check(self, value: Any) -> float:
        if type(value) is not float:
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{self.name} must be a real number, "
                                f"got {type(value).__name__}")
            value = float(value)
        low, high = self.low, self.high
        ok = math.isfinite(value)
        if low is not None:
            ok = ok and (value > low if self.low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if self.high_open else value <= high)
        if not ok:
            raise ValueError(f"{self.name} must be {self.bounds()}, got {value}")
        return value

    def bounds(self) -> str:
        """The rule in words: "in [0, 1]", "a finite number > 0", ..."""
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"a finite number {'<' if self.high_open else '<='} {self.high:g}"
        return "a finite number"


class OptionalReal(Real):
    """None, or a finite real number within bounds (as :class:`Real`)."""

    __slots__ = ()
    kind = "optional real"

    def check(self, value: Any) -> float | None:  # type: ignore[override]
        return None if value is None else super().check(value)


class Flag(Param):
    """True or False.  ``strict=False`` takes any value's truth (``bool(value)``)."""

    __slots__ = ("strict",)
    kind = "flag"
    strict: bool

    def __init__(self, name: str, default: Any, strict: bool = True) -> None:
        self._set(name=name, default=default, strict=strict)

    def check(self, value: Any) -> bool:
        return check_flag(value, self.name) if self.strict else bool(value)


class Choice(Param):
    """One of a few strings."""

    __slots__ = ("choices",)
    kind = "choice"
    choices: tuple[str, ...]

    def __init__(self, name: str, default: Any, choices: tuple[str, ...] = ()) -> None:
        self._set(name=name, default=default, choices=choices)

    def check(self, value: Any) -> Any:
        if value not in self.choices:
            raise ValueError(f"{self.name} must be one of {self.choices}, got {value!r}")
        return value


class OptionalIndex(Param):
    """None or an int (torch's ignore_index)."""

    __slots__ = ()
    kind = "index"

    def __init__(self, name: str, default: Any) -> None:
        self._set(name=name, default=default)

    def check(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{self.name} must be None or an int, got {value!r}")
        return int(value)


class Weights(Param):
    """None, or finite weights (negative allowed): one per column (``per="column"``:
    a scalar or a (K,) array, as pos_weight) or one per class (``per="class"``: (C,))."""

    __slots__ = ("per",)
    kind = "weights"
    per: str

    def __init__(self, name: str, default: Any, per: str = "column") -> None:
        self._set(name=name, default=default, per=per)

    def check(self, value: Any, size: int = 1) -> np.ndarray | None:
        """float64 (size,) weights, or None (``check_for`` gives the elementwise form)."""
        if value is None:
            return None
        name = self.name
        # np.asarray, not np.ascontiguousarray: the latter turns a scalar into shape (1,)
        weights = np.asarray(real_array(value, name), dtype=np.float64, order="C")
        if self.per == "class":
            if weights.shape != (size,):
                raise ValueError(f"{name} must have shape ({size},), one weight per class, "
                                 f"got {name}.shape={weights.shape}")
            check_finite(weights, name)
            return weights
        check_finite(weights.reshape(-1), name)
        if weights.ndim == 0:
            return np.full(size, float(weights))
        if weights.shape != (size,):
            raise ValueError(f"{name} must be a scalar or have shape ({size},), "
                             f"got {name}.shape={weights.shape}")
        return weights

    def check_for(self, value: Any, shape: tuple[int, ...]) -> float | np.ndarray | None:
        """Column weights of an elementwise loss with predictions of ``shape``:
        None, one float for every element (a scalar, or 1-D predictions), or a
        float64 (K,) array for (N, K) predictions."""
        if value is None:
            return None
        weights = self.check(value, 1 if len(shape) == 1 else shape[1])
        assert weights is not None
        if len(shape) == 1 or np.ndim(value) == 0:
            return float(weights[0])
        return weights


def _unchanged(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return values


def scalar_checker(params: tuple[Param, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """One function that checks the values of a loss's parameters by their rules, except
    the weights (whose rule needs the predictions' shape: :func:`shaped_checker`).

    Made once per declaration, so that a call pays one function call per parameter.
    """
    checks = [None if isinstance(param, Weights) else param.check for param in params]
    if not any(checks):
        return _unchanged
    if len(checks) == 1:
        check = checks[0]
        assert check is not None
        return lambda values: (check(values[0]),)
    return lambda values: tuple(value if check is None else check(value)
                                for check, value in zip(checks, values))


def shaped_checker(params: tuple[Param, ...]) -> Callable[[tuple[Any, ...], tuple[int, ...]],
                                                          tuple[Any, ...]] | None:
    """One function that checks a loss's per-column weights (pos_weight) against the
    predictions' shape (see :meth:`Weights.check_for`), or None when it has none."""
    checks = [param.check_for if isinstance(param, Weights) else None for param in params]
    if not any(checks):
        return None
    if len(checks) == 1:
        check = checks[0]
        assert check is not None
        return lambda values, shape: (check(values[0], shape),)
    return lambda values, shape: tuple(value if check is None else check(value, shape)
                                       for check, value in zip(checks, values))


# The parameters that several multiclass losses share (torch's names and rules).
CLASS_WEIGHT = Weights("class_weight", None, per="class")
IGNORE_INDEX = OptionalIndex("ignore_index", None)
LABEL_SMOOTHING = Real("label_smoothing", 0.0, low=0.0, high=1.0)
Z_LOSS = Real("z_loss", 0.0, low=0.0)
GAMMA = Real("gamma", 2.0, low=0.0)             # a focal loss's focusing exponent
SOFTCAP = OptionalReal("softcap", None, low=0.0, low_open=True)


def check_cross_entropy_extras(z_loss: Any, softcap: Any, hess: bool = False
                               ) -> tuple[float, float | None]:
    """The z-loss weight (a finite float >= 0) and the softcap (None, or a finite float > 0).

    Neither has a Hessian: hess=True with either is a ValueError.
    """
    z_loss, softcap = Z_LOSS.check(z_loss), SOFTCAP.check(softcap)
    if hess and (z_loss != 0.0 or softcap is not None):
        raise ValueError("hess=True is not available with z_loss or softcap")
    return z_loss, softcap


# --- every argument of a call ---------------------------------------------------------

class Prepared:
    """Validated, converted arguments of one call (all arrays C-contiguous).

    Made by :func:`prepare_elementwise` with every field, and never changed
    afterwards (a class with slots rather than a named tuple: it is made on
    every call, and a slots object is made and read faster).
    """

    __slots__ = ("pred", "target", "weight", "reduction", "grad", "hess", "out", "n_threads",
                 "shape", "dtype", "weight_unchecked")

    def __init__(self, pred: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
                 reduction: str, grad: bool, hess: bool, out: np.ndarray | None,
                 n_threads: int, weight_unchecked: bool) -> None:
        self.pred = pred            # float32/float64 ndarray, 1-D or 2-D
        self.target = target        # same dtype and shape, or np.intp labels (N,)
        self.weight = weight        # float64 (N,) or None
        self.reduction = reduction
        self.grad = grad
        self.hess = hess            # also compute the Hessian's diagonal (implies grad)
        self.out = out              # the validated out array, or None
        self.n_threads = n_threads  # 0 means the OpenMP default
        self.shape: tuple[int, ...] = pred.shape
        self.dtype: np.dtype = pred.dtype
        # True when the sample weights' finiteness is left to the caller (see
        # defer_weight_check in prepare_elementwise and _reduction.settle_weights)
        self.weight_unchecked = weight_unchecked


class PreparedMulticlass(Prepared):
    """Validated arguments of a multiclass loss: (N, C) logits and labels or probabilities.

    ``target`` is an ``np.intp`` (N,) label array when ``has_labels``, else an
    (N, C) probability array of the logits' dtype.
    """

    __slots__ = ("has_labels", "class_weight", "ignore_index", "label_smoothing")

    def __init__(self, pred: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
                 reduction: str, grad: bool, hess: bool, out: np.ndarray | None,
                 n_threads: int, weight_unchecked: bool, has_labels: bool,
                 class_weight: np.ndarray | None, ignore_index: int | None,
                 label_smoothing: float) -> None:
        Prepared.__init__(self, pred, target, weight, reduction, grad, hess, out, n_threads,
                          weight_unchecked)
        self.has_labels = has_labels
        self.class_weight = class_weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing


def writes_over_input(prep: Prepared | PreparedMulticlass) -> bool:
    """True when the gradient goes over the predictions (out=pred)."""
    return prep.out is not None and np.shares_memory(prep.out, prep.pred)


def _defer_weight_check(weight: np.ndarray | None, out: np.ndarray | None,
                        pred: np.ndarray, defer: bool) -> bool:
    """Check the sample weights now (False), or leave it to settle_weights (True: no extra pass).

    Deferring is allowed only when the gradient does not overwrite an input
    (a failing call must leave every input untouched) and when every row's
    weight reaches the kernel's total (no row is skipped as ignored).
    """
    if weight is None:
        return False
    if defer and not (out is not None and np.shares_memory(out, pred)):
        return True
    check_finite(weight, "sample_weight")
    return False


def check_call_options(grad: Any, hess: Any, out: Any, reduction: Any,
                       n_threads: Any) -> tuple[bool, bool, int]:
    """(grad, hess, thread count) of one call, with ``out`` and ``reduction`` checked.

    The usual values (grad=True, hess=False, out=None, n_threads=None) skip
    their checks' calls: this runs on every call, where microseconds count.
    """
    if grad is not True:
        grad = check_flag(grad, "grad")
    if hess is not False:
        hess = check_hess(hess, grad)
    if out is not None:
        check_out_wanted(out, grad)
    if reduction not in REDUCTIONS:
        check_reduction(reduction)
    return grad, hess, 0 if n_threads is None else check_n_threads(n_threads)


def prepare_elementwise(pred: Any, target: Any, sample_weight: Any, reduction: Any,
                        grad: Any, out: Any, n_threads: Any, pred_name: str = "pred",
                        target_name: str = "target", hess: Any = False,
                        defer_weight_check: bool = False) -> Prepared:
    """Arguments of an elementwise loss: pred and target of one shape, (N,) or (N, K).

    With ``defer_weight_check`` the caller checks the sample weights' finiteness
    with :func:`fastloss._reduction.settle_weights` after its kernel.
    """
    grad, hess, threads = check_call_options(grad, hess, out, reduction, n_threads)
    pred_arr = as_float_array(pred, pred_name)
    if pred_arr.ndim not in (1, 2):
        check_ndim(pred_arr, pred_name, (1, 2))
    target_arr = as_float_array(target, target_name, pred_arr.dtype)
    if target_arr.shape != pred_arr.shape:
        check_same_shape(pred_arr, pred_name, target_arr, target_name)
    weight = None
    if sample_weight is not None:
        weight = as_sample_weight(sample_weight, pred_arr.shape[0])
    if out is not None:
        out = check_out(out, pred_arr.shape, pred_arr.dtype, pred_arr,
                        [(target_name, target_arr), ("sample_weight", weight)])
    deferred = weight is not None and _defer_weight_check(weight, out, pred_arr,
                                                          defer_weight_check)
    return Prepared(pred_arr, target_arr, weight, reduction, grad, hess, out, threads, deferred)


def prepare_further_inputs(prep: Prepared, input_names: tuple[str, ...],
                           gradients: tuple[str, ...], values: tuple[Any, ...],
                           outs: tuple[Any, ...], broadcast_inputs: tuple[str, ...] = ()
                           ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray | None, ...],
                                      tuple[tuple[int, ...], ...]]:
    """The inputs of an elementwise loss after pred and target (a variance), and the
    ``out`` arrays of the gradients after the first (``out_var``).

    Each further input has the predictions' shape and is converted to their
    dtype; an input named in ``broadcast_inputs`` may instead broadcast against
    them (:func:`broadcast_shape`, torch's rule for gaussian_nll_loss's var).  Each out array has its input's shape and may
    be that input itself.  Returns (inputs, outs, shapes): the inputs and
    outs as views of the shape that broadcasts against the predictions
    ((N, 1) for one value per row of (N, K)), and the inputs' own shapes
    (those of the gradients returned).
    """
    pred_name = input_names[0]
    arrays = {pred_name: prep.pred}
    further, shapes = [], []
    for name, value in zip(input_names[2:], values):
        arr = as_float_array(value, name, prep.dtype)
        if name in broadcast_inputs and arr.shape != prep.shape:
            broadcast = broadcast_shape(prep.shape, arr.shape, pred_name, name)
        else:
            check_same_shape(prep.pred, pred_name, arr, name)
            broadcast = arr.shape
        arrays[name] = arr
        shapes.append(arr.shape)
        further.append(arr.reshape(broadcast))
    checked = []
    for gradient, out in zip(gradients[1:], outs):
        check_out_wanted(out, prep.grad, f"out_{gradient}")
        others: list[tuple[str, np.ndarray | None]] = [
            (name, arr) for name, arr in arrays.items() if name != gradient]
        others += [(name, arr) for name, arr in (("target", prep.target),
                                                 ("sample_weight", prep.weight),
                                                 ("out", prep.out))]
        out = check_out(out, arrays[gradient].shape, prep.dtype, arrays[gradient],
                        others, name=f"out_{gradient}", pred_name=gradient)
        index = input_names.index(gradient) - 2
        checked.append(out if out is None or index < 0 or out.shape == further[index].shape
                       else out.reshape(further[index].shape))
    return tuple(further), tuple(checked), tuple(shapes)


def broadcast_shape(pred_shape: tuple[int, ...], shape: tuple[int, ...], pred_name: str,
                    name: str) -> tuple[int, ...]:
    """The shape in which an input of ``shape`` broadcasts against predictions of
    ``pred_shape`` under torch's rule for gaussian_nll_loss's var, or a ValueError.

    The predictions' shape without its last dimension ((N,) for (N, K), () for
    (N,)) is read with a last dimension of size 1 ((N, 1), (1,)); otherwise
    the number of dimensions must be the predictions', and exactly one
    dimension differ, of size 1 there ((N, 1) or (1, K) for (N, K)).
    """
    if shape == pred_shape[:-1]:
        return pred_shape[:-1] + (1,)
    differing = [size for size, pred_size in zip(shape, pred_shape) if size != pred_size]
    if len(shape) == len(pred_shape) and sum(differing) == 1:
        return shape
    raise ValueError(f"{name} must have the shape of {pred_name} {pred_shape}, that shape "
                     f"without its last dimension {pred_shape[:-1]}, or one dimension of "
                     f"size 1 where {pred_name}'s differs; got {name}.shape={shape}")


def prepare_multiclass(logits: Any, target: Any, sample_weight: Any, reduction: Any,
                       grad: Any, out: Any, n_threads: Any, *, target_kind: str = "either",
                       class_weight: Any = None, ignore_index: Any = None,
                       label_smoothing: Any = 0.0, pred_name: str = "logits",
                       hess: Any = False,
                       defer_weight_check: bool = False,
                       defer_label_check: bool = False) -> PreparedMulticlass:
    """Arguments of a multiclass loss.

    ``target_kind`` is "labels" (an (N,) integer array), "probabilities" (an
    (N, C) array like the logits) or "either" (decided by the target's
    number of dimensions).  class_weight, ignore_index and label_smoothing
    are checked by their declarations below (a loss without them passes the
    defaults).  ``defer_weight_check`` as in :func:`prepare_elementwise` (not
    with ignore_index: an ignored row's weight never reaches the kernel's
    total); it also leaves the check of probability targets (>= 0, not NaN
    or infinite) to the kernel, which reports them in its own pass, except
    when the gradient overwrites the logits.  ``defer_label_check`` does the
    same for the labels' range (a kernel that checks every label before it
    reads with it: softmax_cross_entropy), except in place, with class
    weights (the "mean" divisor reads w_{y_i}) or without classes; the
    caller then calls ``_targets.check_label_range`` when the kernel reports
    a bad label.
    """
    grad, hess, threads = check_call_options(grad, hess, out, reduction, n_threads)
    if ignore_index is not None:
        ignore_index = IGNORE_INDEX.check(ignore_index)
    label_smoothing = LABEL_SMOOTHING.check(label_smoothing)
    pred_arr = as_float_array(logits, pred_name)
    if pred_arr.ndim != 2:
        check_ndim(pred_arr, pred_name, (2,))
    n_rows, n_classes = pred_arr.shape
    target = as_any_array(target, "target")
    target_ndim = target.ndim
    if target_kind == "either":
        target_kind = "probabilities" if target_ndim == 2 else "labels"
    if target_kind == "labels":
        if target_ndim == 2 and target.shape == pred_arr.shape:
            raise ValueError(f"target must be ({n_rows},) integer class labels for this loss, "
                             f"got shape {target.shape}")
        target_arr = as_labels(target, n_rows, n_classes, ignore_index,
                               check_range=not defer_label_check)
    else:
        target_arr = as_float_array(target, "target", pred_arr.dtype)
        check_same_shape(pred_arr, pred_name, target_arr, "target")
        if ignore_index is not None:
            raise ValueError("ignore_index applies to integer labels only, "
                             "not to probability targets")
    weight = None if sample_weight is None else as_sample_weight(sample_weight, n_rows)
    if class_weight is not None:
        class_weight = CLASS_WEIGHT.check(class_weight, n_classes)
    in_place = False
    if out is not None:
        out = check_out(out, pred_arr.shape, pred_arr.dtype, pred_arr,
                        [("target", target_arr), ("sample_weight", weight),
                         ("class_weight", class_weight)])
        in_place = np.shares_memory(out, pred_arr)
    has_labels = target_kind == "labels"
    if has_labels and defer_label_check and (in_place or class_weight is not None
                                             or n_classes == 0):
        check_label_range(target_arr, n_classes, ignore_index)
    if not has_labels and (not defer_weight_check or in_place):
        # (else the kernel checks the probabilities in its own pass)
        check_probabilities(target_arr, "target")
    deferred = weight is not None and _defer_weight_check(
        weight, out, pred_arr, defer_weight_check and ignore_index is None)
    return PreparedMulticlass(pred_arr, target_arr, weight, reduction, grad, hess, out, threads,
                              deferred, has_labels, class_weight, ignore_index,
                              label_smoothing)


def prepare_rows(x: Any, out: Any, n_threads: Any,
                 out_ndim: int) -> tuple[np.ndarray, np.ndarray | None, int]:
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
