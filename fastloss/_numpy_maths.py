"""Stable NumPy building blocks of the reference formulas.

Design: the NumPy twins (the elementwise formulas in the declarations, the
multiclass functions of ``fastloss.reference``) are written with these
helpers, so that each rule (0 * inf = 0 for a vanishing term, a sigmoid that
never overflows) is written once.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def xmul(a: Any, b: Any) -> Any:
    """a * b with 0 * inf = 0 (a vanishing term), NaN still propagating."""
    with np.errstate(invalid="ignore"):
        return np.where((a == 0) & np.isinf(b), 0.0, a * b)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for either sign of x."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
