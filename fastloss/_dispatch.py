"""Choose, once at import, which build of the kernels runs, and bind its kernels.

Design: this is the only module that knows where the compiled kernels are.
The faces take from it each fused kernel's float and double
specialisations (:func:`specialisations`) and the placeholder arrays that
stand for an absent optional array in a kernel call.

On x86-64 every kernel module is built twice: for the baseline (SSE2, any
x86-64 CPU) and for x86-64-v3 (AVX2 and FMA: twice the SIMD width, fused
multiply-adds in the polynomials).  The x86-64-v3 build is used when the CPU
supports it, unless the environment variable ``FASTLOSS_FORCE_BASELINE`` is
set to anything but "" or "0" (to test the baseline on a modern machine).
Both builds compute the same formulas; results may differ in the last bits,
because FMA rounds once where the baseline rounds twice.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable

import numpy as np

from fastloss import _config

BASELINE = "baseline"
X86_64_V3 = "x86-64-v3"


def _choose() -> tuple[str, str]:
    """(path, reason): the build to use and why."""
    if os.environ.get("FASTLOSS_FORCE_BASELINE", "") not in ("", "0"):
        return BASELINE, "forced by FASTLOSS_FORCE_BASELINE"
    if not _config.cpu_has_x86_64_v3():
        return BASELINE, "the CPU lacks x86-64-v3 (AVX2, FMA)"
    try:
        importlib.import_module("fastloss._elementwise_kernels_v3")
        importlib.import_module("fastloss._multiclass_kernels_v3")
    except ImportError:
        return BASELINE, "the x86-64-v3 build is not installed"
    return X86_64_V3, "the CPU supports x86-64-v3"


PATH, REASON = _choose()
_SUFFIX = "_v3" if PATH == X86_64_V3 else ""
elementwise_kernels: ModuleType = importlib.import_module(
    "fastloss._elementwise_kernels" + _SUFFIX)
multiclass_kernels: ModuleType = importlib.import_module(
    "fastloss._multiclass_kernels" + _SUFFIX)

# The 512-bit twins of a few float32 passes (_vecmath.h), taken where the CPU
# has AVX-512 unless FASTLOSS_NO_AVX512 is set to anything but "" or "0"; each
# kernel module holds its own switch.
WIDE_LANES: bool = all([module.set_wide_lanes(os.environ.get("FASTLOSS_NO_AVX512", "")
                                              in ("", "0"))
                        for module in (elementwise_kernels, multiclass_kernels)])


# --- binding the kernels -------------------------------------------------------------

FLOAT32, FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)
_CTYPE: dict[np.dtype, str] = {FLOAT32: "float", FLOAT64: "double"}


def specialisations(module: ModuleType) -> dict[str, dict[np.dtype, Callable[..., Any]]]:
    """The float and double specialisations of every fused kernel of ``module``, by
    name and NumPy dtype.

    Calling a specialisation directly skips Cython's fused-type dispatch,
    which costs microseconds per call.
    """
    kernels: dict[str, dict[np.dtype, Callable[..., Any]]] = {}
    for name in dir(module):
        signatures = getattr(getattr(module, name), "__signatures__", None)
        if signatures is not None and set(_CTYPE.values()) <= set(signatures):
            kernels[name] = {dtype: signatures[ctype] for dtype, ctype in _CTYPE.items()}
    return kernels


# Placeholders for an absent optional array (the kernels read a length of 0 as "none").
NO_WEIGHT: np.ndarray = np.empty(0)                         # float64 (0,)
NO_LABELS: np.ndarray = np.empty(0, dtype=np.intp)          # (0,) labels
NO_VALUES: dict[np.dtype, np.ndarray] = {dt: np.empty(0, dtype=dt) for dt in _CTYPE}
NO_ROWS: dict[np.dtype, np.ndarray] = {dt: np.empty((0, 0), dtype=dt) for dt in _CTYPE}
