"""Accuracy of the vectorisable exp, log and log1p of _vecmath.h, in every build.

The kernels' elementary functions are measured in ulps (units in the last
place of the result's dtype) against an independent, unrounded oracle:
mpmath at 50 digits for the double versions (the error is taken in mpmath,
before any rounding to float64), NumPy's float64 functions for the float
versions (their own error is about 1e-9 of a float ulp), over the whole
range of arguments, and exactly at the special values (overflow and
underflow thresholds, subnormals, +-0, +-inf, NaN, arguments outside the
domain).

Each bound is the error measured on these arguments, rounded up in the
second decimal: a change that makes a function less accurate (a polynomial
coefficient off by 1e-4, say) fails here even when it stays below 1 ulp.  A
change that trades accuracy for speed on purpose restates the bound with its
new measured figure; the losses' own budgets (test_accuracy.py) never move.
"""
import importlib
import subprocess
import sys

import numpy as np
import pytest

from fastloss import _config

# The tests' entry points to the maths (nothing in the package imports them),
# compiled like the kernels: once for the baseline, once for x86-64-v3.
MODULES = ["fastloss._test_hooks"]
if _config.cpu_has_x86_64_v3():
    MODULES.append("fastloss._test_hooks_v3")

# Largest error in ulps measured on ARGUMENTS (seeded), rounded up:
# {module: {function: (double version, float version)}}.  The builds differ
# because FMA rounds once where the baseline's multiply and add round twice.
BOUNDS = {
    "fastloss._test_hooks": {           # measured 0.940 / 1.185, 0.643 / 0.768,
        "exp": (0.95, 1.19),            # 0.704 / 0.791
        "log": (0.65, 0.77),
        "log1p": (0.71, 0.80),
    },
    "fastloss._test_hooks_v3": {        # measured 0.773 / 0.883, 0.605 / 0.807,
        "exp": (0.78, 0.89),            # 0.728 / 0.774
        "log": (0.61, 0.81),
        "log1p": (0.73, 0.78),
    },
}


def bounds_of(hooks, function):
    """The measured (double, float) bounds of this build of function.

    The debug build (-O0, or -O1 under AddressSanitizer) forms no fused
    multiply-adds (gcc contracts a * b + c only from -O2), so its x86-64-v3
    twin rounds exactly as the baseline does.
    """
    name = "fastloss._test_hooks" if hooks.BUILD["debug"] else hooks.__name__
    return BOUNDS[name][function]


def load(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not built")


@pytest.fixture(params=MODULES, ids=["baseline", "x86-64-v3"][:len(MODULES)])
def hooks(request):
    return load(request.param)


def apply(hooks, function, x):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    hooks.vecmath(function, x, out)
    return out


def ulp_error(got, want, dtype):
    """|got - want| in ulps of want in dtype (want given in higher precision)."""
    want_rounded = np.asarray(want).astype(dtype)
    spacing = np.spacing(np.abs(want_rounded)).astype(np.float64)
    return np.abs(got.astype(np.float64) - np.asarray(want, dtype=np.float64)) / spacing


# --- arguments over the whole range -----------------------------------------------

def exp_arguments(dtype, n):
    rng = np.random.default_rng(1)
    hi = 709.78 if dtype == np.float64 else 88.7
    lo = -745.0 if dtype == np.float64 else -103.0
    return np.concatenate([rng.uniform(lo, hi, n), rng.uniform(-1, 1, n // 4),
                           rng.uniform(-1e-6, 1e-6, n // 8)]).astype(dtype)


def log_arguments(dtype, n):
    """Positive numbers log-uniform over every binade, subnormals included."""
    rng = np.random.default_rng(2)
    info = np.finfo(dtype)
    lo = np.log2(float(info.smallest_subnormal))
    hi = np.log2(float(info.max)) - 0.01
    x = np.exp2(rng.uniform(lo, hi, n)).astype(dtype)
    near_one = (1 + rng.uniform(-0.3, 0.3, n // 4)).astype(dtype)
    return np.concatenate([x[x > 0], near_one])


def log1p_arguments(dtype, n):
    rng = np.random.default_rng(3)
    small = np.exp2(rng.uniform(-60, 0, n // 2)) * rng.choice([-1, 1], n // 2)
    large = np.exp2(rng.uniform(0, 100 if dtype == np.float32 else 1000, n // 2))
    x = np.concatenate([small, large, rng.uniform(-0.999, 1, n // 4)]).astype(dtype)
    return x[x > -1]


ARGUMENTS = {"exp": exp_arguments, "log": log_arguments, "log1p": log1p_arguments}


def mpmath_oracle(function, x):
    mpmath = pytest.importorskip("mpmath")
    f = {"exp": mpmath.exp, "log": mpmath.log, "log1p": mpmath.log1p}[function]
    with mpmath.workdps(50):
        return np.array([float(f(mpmath.mpf(float(v)))) for v in x])


def exact_ulp_error(got, x, function):
    """|got - f(x)| in float64 ulps of f(x), with f(x) exact (mpmath, 50 digits)."""
    mpmath = pytest.importorskip("mpmath")
    f = {"exp": mpmath.exp, "log": mpmath.log, "log1p": mpmath.log1p}[function]
    errors = np.empty(len(x))
    with mpmath.workdps(50):
        for i, (value, arg) in enumerate(zip(got, x)):
            exact = f(mpmath.mpf(float(arg)))
            ulp = mpmath.mpf(float(np.spacing(abs(np.float64(float(exact))))))
            errors[i] = float(abs(mpmath.mpf(float(value)) - exact) / ulp)
    return errors


@pytest.mark.parametrize("function", ["exp", "log", "log1p"])
def test_double_accuracy_against_mpmath(hooks, function):
    x = ARGUMENTS[function](np.float64, 4000)
    errors = exact_ulp_error(apply(hooks, function, x), x, function)
    bound = bounds_of(hooks, function)[0]
    assert np.isfinite(errors).all()
    assert errors.max() <= bound, (function, x[np.argmax(errors)], errors.max())


@pytest.mark.parametrize("function", ["exp", "log", "log1p"])
def test_float_accuracy_against_float64(hooks, function):
    x = ARGUMENTS[function](np.float32, 400_000)
    want = getattr(np, function)(x.astype(np.float64))
    errors = ulp_error(apply(hooks, function, x), want, np.float32)
    bound = bounds_of(hooks, function)[1]
    assert np.isfinite(errors).all()
    assert errors.max() <= bound, (function, x[np.argmax(errors)], errors.max())


def test_exp_for_float_is_accurate_far_below_a_float_ulp(hooks):
    """The shortened exp of the float32 row passes: < 1e-8 relative (a float ulp is 6e-8)."""
    x = exp_arguments(np.float64, 4000)
    got = apply(hooks, "exp_for_float", x)
    want = mpmath_oracle("exp", x)
    normal = want > np.finfo(np.float64).smallest_normal
    relative = np.abs(got[normal] - want[normal]) / want[normal]
    assert relative.max() < 1e-8, relative.max()
    special = np.array([np.inf, -np.inf, np.nan, 0.0, 710.0, -746.0])
    got = apply(hooks, "exp_for_float", special)
    assert got[0] == np.inf and got[1] == 0.0 and np.isnan(got[2]) and got[3] == 1.0
    assert got[4] == np.inf and got[5] == 0.0


# --- special values, exactly ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(hooks, dtype):
    info = np.finfo(dtype)
    overflow = 89.0 if dtype == np.float32 else 710.0       # exp overflows beyond ~88.72 / ~709.78
    underflow = -104.0 if dtype == np.float32 else -746.0   # below half the least subnormal
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, overflow, -underflow * -1, underflow,
                  1e30, -1e30], dtype=dtype)
    got = apply(hooks, "exp", x)
    np.testing.assert_array_equal(got[:2], [1.0, 1.0])
    assert got[2] == np.inf and got[3] == 0.0 and np.isnan(got[4])
    assert got[5] == np.inf and got[7] == 0.0
    assert got[8] == np.inf and got[9] == 0.0
    # the largest finite result and the subnormal range
    big = np.log(np.float64(info.max)) - 1e-3
    tiny = np.log(np.float64(info.smallest_normal)) - 5.0   # a subnormal result
    values = apply(hooks, "exp", np.array([big, tiny], dtype=dtype))
    want = np.exp(np.array([big, tiny], dtype=dtype).astype(np.longdouble))
    assert np.isfinite(values[0]) and values[1] > 0
    assert ulp_error(values, want, dtype).max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_special_values(hooks, dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 1.0, info.smallest_subnormal,
                  info.max], dtype=dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log(x.astype(np.float64))
    got = apply(hooks, "log", x)
    np.testing.assert_array_equal(got[:6], want[:6].astype(dtype))
    assert got[6] == 0.0
    assert ulp_error(got[7:], want[7:], dtype).max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_special_values(hooks, dtype):
    info = np.finfo(dtype)
    x = np.array([-1.0, -2.0, -np.inf, np.inf, np.nan, 0.0, info.smallest_subnormal,
                  -info.smallest_subnormal, info.max], dtype=dtype)
    got = apply(hooks, "log1p", x)
    assert got[0] == -np.inf
    assert np.isnan(got[1]) and np.isnan(got[2]) and np.isnan(got[4])
    assert got[3] == np.inf
    assert got[5] == 0.0
    assert np.signbit(apply(hooks, "log1p", np.array([-0.0], dtype=dtype))[0])  # log1p(-0) = -0
    np.testing.assert_array_equal(got[6:8], x[6:8])           # log1p(x) = x for tiny x
    assert ulp_error(got[8:], np.log1p(x[8:].astype(np.float64)), dtype).max() <= 1.0


def test_unknown_function_is_refused(hooks):
    x = np.zeros(3)
    with pytest.raises(ValueError, match="unknown function"):
        hooks.vecmath("sin", x, x.copy())


def test_the_package_does_not_load_the_test_hooks():
    code = ("import sys, fastloss; "
            "print(sorted(m for m in sys.modules if m.startswith('fastloss._test_hooks')))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert printed == "[]"
    # and the production kernels carry no test entry point
    for name in ("fastloss._elementwise_kernels", "fastloss._elementwise_kernels_v3"):
        if name == "fastloss._elementwise_kernels" or _config.cpu_has_x86_64_v3():
            assert not hasattr(load(name), "vecmath"), name
