"""Targets: what each loss accepts as a target, and the one check of each rule.

Design: a loss declares its target rule (``REAL``, ``UNIT_INTERVAL``,
``SIGNS``, ``COUNTS``, ``LABELS``, ``PROBABILITIES`` or
``LABELS_OR_PROBABILITIES``), and a rule for any further input the kernel
checks (``VARIANCES``: gaussian_nll's var).
Each rule has exactly one function that checks the values and raises the
error naming the first bad position and value.  The NumPy reference calls it
up front.  The fast kernels look at every target in their own pass and only
report that something was wrong (a flag); the fast face then calls the same
function to raise the same error, so the two faces cannot disagree on a
message.  Where the gradient would overwrite an input, the fast face scans
the targets first, and again lets this function raise.

Integer class labels are converted here too (any integer dtype to
``np.intp``); floats are a ``TypeError`` that says to pass integers.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def check_probabilities(target: np.ndarray, name: str, at_most_one: bool = False) -> np.ndarray:
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


def check_unit_interval(target: np.ndarray, name: str) -> np.ndarray:
    """Binary cross-entropy targets: probabilities in [0, 1], none NaN."""
    return check_probabilities(target, name, at_most_one=True)


def check_signs(target: np.ndarray, name: str) -> np.ndarray:
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


def check_nonnegative(values: np.ndarray, name: str, what: str, finite: bool) -> np.ndarray:
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


def check_counts(target: np.ndarray, name: str) -> np.ndarray:
    """Poisson targets: finite counts >= 0 (not necessarily integers, as in torch)."""
    return check_nonnegative(target, name, "counts", finite=True)


def check_variances(var: np.ndarray, name: str) -> np.ndarray:
    """Predicted variances: >= 0; NaN passes (it propagates to the loss)."""
    return check_nonnegative(var, name, "variances", finite=False)


def as_labels(target: Any, n_rows: int, n_classes: int, ignore_index: int | None = None,
              name: str = "target", check_range: bool = True) -> np.ndarray:
    """Integer class labels (N,) of any integer dtype -> np.intp.

    Every label must lie in [0, n_classes) or equal ``ignore_index``; the
    first one that does not is named in the ValueError (by
    :func:`check_label_range`, which ``check_range=False`` leaves to the caller:
    a kernel that checks the labels in its own pass calls it only when one is bad).
    """
    arr = np.asarray(target)
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
    if check_range:
        check_label_range(arr, n_classes, ignore_index, name)
    return np.ascontiguousarray(arr, dtype=np.intp)


def check_label_range(arr: np.ndarray, n_classes: int, ignore_index: int | None = None,
                      name: str = "target") -> None:
    """A ValueError naming the first label outside [0, n_classes) and not ``ignore_index``."""
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


def _any_real(target: np.ndarray, name: str) -> np.ndarray:
    return target


class TargetRule:
    """What a loss accepts as its target.

    ``check(target, name)`` returns the targets the maths reads (hinge
    targets in {0, 1} become +-1) or raises the rule's error; ``values``
    says it in words (the docs table).  ``labels`` and ``probabilities``
    tell which target forms a multiclass loss accepts.  ``scan`` names the
    check an elementwise kernel makes of every value in its own pass (the
    ``scan_targets`` kinds of the kernel module), "" for none.  Read-only
    once made.
    """

    __slots__ = ("name", "values", "check", "labels", "probabilities", "scan")
    name: str
    values: str
    check: Callable[[np.ndarray, str], np.ndarray]
    labels: bool
    probabilities: bool
    scan: str

    def __init__(self, name: str, values: str,
                 check: Callable[[np.ndarray, str], np.ndarray] = _any_real,
                 labels: bool = False, probabilities: bool = False, scan: str = "") -> None:
        for field, value in (("name", name), ("values", values), ("check", check),
                             ("labels", labels), ("probabilities", probabilities),
                             ("scan", scan)):
            object.__setattr__(self, field, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the target rule {self.name} is read-only")

    def __repr__(self) -> str:
        return f"TargetRule({self.name!r})"


REAL = TargetRule("real", "real numbers")
UNIT_INTERVAL = TargetRule("unit_interval", "in [0, 1]", check_unit_interval,
                           scan="UNIT_TARGETS")
SIGNS = TargetRule("signs", "±1 or 0/1", check_signs, scan="BINARY_TARGETS")
COUNTS = TargetRule("counts", "finite ≥ 0", check_counts, scan="NONNEGATIVE_FINITE")
VARIANCES = TargetRule("variances", "≥ 0", check_variances, scan="NONNEGATIVE")
LABELS = TargetRule("labels", "(N,) integer labels", labels=True)
PROBABILITIES = TargetRule("probabilities", "(N, C) probabilities", check_probabilities,
                           probabilities=True)
LABELS_OR_PROBABILITIES = TargetRule("labels_or_probabilities",
                                     "(N,) integer labels or (N, C) probabilities",
                                     check_probabilities, labels=True, probabilities=True)
