"""Choose, once at import, which build of the kernels runs.

On x86-64 every kernel module is built twice: for the baseline (SSE2, any
x86-64 CPU) and for x86-64-v3 (AVX2 and FMA: twice the SIMD width, fused
multiply-adds in the polynomials).  The x86-64-v3 build is used when the CPU
supports it, unless the environment variable ``FASTLOSS_FORCE_BASELINE`` is
set to anything but "" or "0" (to test the baseline on a modern machine).
Both builds compute the same formulas; results may differ in the last bits,
because FMA rounds once where the baseline rounds twice.
"""
import importlib
import os
from types import ModuleType

from fastloss import _config

BASELINE = "baseline"
X86_64_V3 = "x86-64-v3"


def _choose():
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
elementwise_kernels: ModuleType = importlib.import_module("fastloss._elementwise_kernels" + _SUFFIX)
multiclass_kernels: ModuleType = importlib.import_module("fastloss._multiclass_kernels" + _SUFFIX)
