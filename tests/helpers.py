"""Test helpers shared by every test module."""
import tracemalloc

import numpy as np

# Tolerances for comparing the fast kernels with the NumPy reference, per
# computation dtype: both compute the same formula, so they agree to a few
# rounding errors of that dtype (scaled by the magnitude of the values).
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
ATOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-14}


def assert_close(actual, expected, dtype, scale=1.0):
    """Elementwise agreement within the dtype's tolerance (NaN matches NaN)."""
    dtype = np.dtype(dtype)
    rtol, atol = RTOL[dtype], ATOL[dtype] * scale
    actual_64 = np.asarray(actual, dtype=np.float64)
    expected_64 = np.asarray(expected, dtype=np.float64)
    if actual_64.shape == expected_64.shape:
        # Fast path for large arrays; assert_allclose below explains any failure.
        with np.errstate(invalid="ignore"):
            ok = ((np.abs(actual_64 - expected_64) <= atol + rtol * np.abs(expected_64))
                  | (actual_64 == expected_64)
                  | (np.isnan(actual_64) & np.isnan(expected_64)))
        if ok.all():
            return
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def finite_difference_gradient(f, x, step=1e-4):
    """4th-order central finite difference of the scalar function f at x.

    df/dx_i ~ (-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)) / (12 h),
    with error O(h^4): about 1e-10 relative for smooth f and h = 1e-4.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i]
        values = []
        for offset in (2, 1, -1, -2):
            flat_x[i] = original + offset * step
            values.append(f(x))
        flat_x[i] = original
        flat_grad[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step)
    return grad


def snapshot(*arrays):
    """Copies of the given arrays, to check later that nothing was modified."""
    return [None if a is None else np.array(a, copy=True) for a in arrays]


def assert_unchanged(originals, arrays):
    for before, after in zip(originals, arrays):
        if before is not None:
            np.testing.assert_array_equal(np.asarray(after), before)


def load_example(filename):
    """The module of examples/<filename>, or a skip where examples/ is not beside
    the tests (the suite run against an installed wheel)."""
    import importlib.util
    from pathlib import Path

    import pytest

    path = Path(__file__).resolve().parent.parent / "examples" / filename
    if not path.exists():
        pytest.skip("examples/ is not beside the tests (an installed wheel)")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_showcase():
    """The package examples/showcase, imported as ``showcase`` (as its command does),
    or a skip where examples/ is not beside the tests (the suite run against an
    installed wheel, which does not ship the showcase)."""
    import importlib.util
    import sys
    from pathlib import Path

    import pytest

    if "showcase" in sys.modules:
        return sys.modules["showcase"]
    path = Path(__file__).resolve().parent.parent / "examples" / "showcase"
    if not path.exists():
        pytest.skip("examples/ is not beside the tests (an installed wheel)",
                    allow_module_level=True)
    spec = importlib.util.spec_from_file_location(
        "showcase", path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["showcase"] = module
    spec.loader.exec_module(module)
    return module


def peak_bytes(call):
    """(bytes allocated at the peak of call() above what was allocated before, its result).

    The call runs once first, so that caches and lazy imports do not count.
    """
    call()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, result
