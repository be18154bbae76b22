"""The losses beyond the seed (API.md "More losses"): l1, smooth_l1, log_cosh, pinball,
poisson_nll, sigmoid_focal_loss and gaussian_nll.

Each fast function is checked against its NumPy twin (every option, reduction,
shape and dtype, with and without sample weights, out= and in place), against
an exact oracle within the accuracy budgets of tests/test_accuracy.py on the
adversarial inputs of tests/adversarial_more.py, against finite differences
(gradients, and Hessians from the gradient), against torch where torch has
the loss (torchvision's published focal formula written in torch and
differentiated by autograd), at extreme and non-finite predictions, and for
every bad input of API.md's table (a ValueError that leaves the inputs
untouched).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import adversarial_more
import fastloss
import fastloss.reference
import oracle
import oracle_more
from helpers import assert_close, assert_unchanged, finite_difference_gradient, snapshot

REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [np.float32, np.float64]


# --- the losses, their inputs and options ----------------------------------------------

def regression_inputs(rng, shape, dtype):
    return (rng.normal(scale=2.0, size=shape).astype(dtype),
            rng.normal(size=shape).astype(dtype))


def count_inputs(rng, shape, dtype):
    return (rng.normal(size=shape).astype(dtype),
            rng.poisson(2.0, size=shape).astype(dtype))


def rate_inputs(rng, shape, dtype):
    return (rng.uniform(0.05, 4.0, size=shape).astype(dtype),
            rng.poisson(2.0, size=shape).astype(dtype))


def unit_inputs(rng, shape, dtype):
    target = rng.uniform(size=shape)
    target[rng.uniform(size=shape) < 0.3] = 0.0
    target[rng.uniform(size=shape) < 0.3] = 1.0
    return rng.normal(scale=3.0, size=shape).astype(dtype), target.astype(dtype)


def gaussian_inputs(rng, shape, dtype):
    return (rng.normal(scale=2.0, size=shape).astype(dtype), rng.normal(size=shape).astype(dtype),
            rng.uniform(0.2, 3.0, size=shape).astype(dtype))


@dataclass
class Spec:
    """One new loss: valid inputs of a shape, option variants, whether hess=True works."""
    name: str
    make_inputs: Callable
    options: dict = field(default_factory=lambda: {"default": {}})
    hess: bool = True
    pred_name: str = "pred"

    @property
    def fast(self):
        return getattr(fastloss, self.name)

    @property
    def reference(self):
        return getattr(fastloss.reference, self.name)

    def __repr__(self):
        return self.name


SPECS = [
    Spec("l1", regression_inputs, hess=False),
    Spec("smooth_l1", regression_inputs, {"default": {}, "beta=0.3": {"beta": 0.3},
                                          "beta=0": {"beta": 0.0}, "beta=5": {"beta": 5.0}}),
    Spec("log_cosh", regression_inputs),
    Spec("pinball", regression_inputs, {"default": {}, "q=0.1": {"quantile": 0.1},
                                        "q=0.95": {"quantile": 0.95}}, hess=False),
    Spec("poisson_nll", count_inputs, {"default": {}, "full": {"full": True}}),
    Spec("poisson_nll", rate_inputs, {"rates": {"log_input": False},
                                      "rates-full-eps": {"log_input": False, "full": True,
                                                         "eps": 0.01}}),
    Spec("sigmoid_focal_loss", unit_inputs,
         {"default": {}, "gamma=0": {"gamma": 0.0}, "gamma=1": {"gamma": 1.0},
          "gamma=0.5-no-alpha": {"gamma": 0.5, "alpha": -1.0},
          "gamma=3.5-alpha=0.9": {"gamma": 3.5, "alpha": 0.9}}, pred_name="logits"),
    Spec("gaussian_nll", gaussian_inputs, {"default": {}, "full": {"full": True},
                                           "eps=0.5": {"eps": 0.5}}, pred_name="mean"),
]
VARIANTS = [pytest.param(spec, option, id=f"{spec.name}[{option}]")
            for spec in SPECS for option in spec.options]
NAMES = list(dict.fromkeys(spec.name for spec in SPECS))
HESS_VARIANTS = [p for p in VARIANTS if p.values[0].hess]


def inputs_for(spec, shape, dtype, seed=0):
    return spec.make_inputs(np.random.default_rng(seed), shape, dtype)


def grads_of(result):
    """The gradient arrays of a result: (grad,) or (grad_mean, grad_var)."""
    if result.grad is None:
        return ()
    return result.grad if isinstance(result.grad, tuple) else (result.grad,)


def assert_results_close(fast, slow, dtype, scale=1.0):
    assert_close(fast.loss, slow.loss, dtype, scale)
    for got, want in zip(grads_of(fast), grads_of(slow), strict=True):
        assert got.dtype == np.dtype(dtype) and got.shape == want.shape
        assert_close(got, want, dtype, scale)
    if hasattr(slow, "hess"):
        assert_close(fast.hess, slow.hess, dtype, scale)


# --- the public face -----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_exported_with_the_reference_docstring(name):
    for module in (fastloss, fastloss.reference):
        assert name in module.__all__ and callable(getattr(module, name))
    assert getattr(fastloss, name).__doc__ == getattr(fastloss.reference, name).__doc__
    assert "Examples:" in getattr(fastloss, name).__doc__


@pytest.mark.parametrize("module", [fastloss, fastloss.reference], ids=["fast", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_docstring_examples(name, module):
    import doctest
    function = getattr(module, name)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(function, name, globs={"fastloss": module}):
        test.globs["fastloss"] = fastloss if module is fastloss else fastloss.reference
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


# --- the fast kernels against their NumPy twins ------------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(257,), (40, 7)], ids=["1d", "2d"])
@pytest.mark.parametrize("spec, option", VARIANTS)
def test_fast_matches_reference(spec, option, shape, dtype, reduction, weighted):
    args = inputs_for(spec, shape, dtype)
    weight = np.random.default_rng(1).uniform(0.2, 2.0, shape[0]) if weighted else None
    kwargs = dict(spec.options[option], sample_weight=weight, reduction=reduction,
                  hess=spec.hess)
    fast = spec.fast(*args, **kwargs)
    slow = spec.reference(*args, **kwargs)
    assert_results_close(fast, slow, dtype, scale=10.0)
    if reduction != "none":
        assert type(fast.loss) is float


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("var_shape", ["same", "(N, 1)", "(N,)", "(1, K)", "1d-scalar",
                                       "1d-(1,)", "1d-same"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_every_variance_shape(var_shape, reduction, dtype):
    rng = np.random.default_rng(2)
    mean, target, var = gaussian_inputs(rng, (30, 4), dtype)
    weight = rng.uniform(0.5, 2.0, 30)
    var = {"same": var, "(N, 1)": var[:, :1], "(N,)": var[:, 0], "(1, K)": var[:1],
           "1d-scalar": np.asarray(var[0, 0]), "1d-(1,)": var[0, :1],
           "1d-same": var[:, 0]}[var_shape]
    if var_shape.startswith("1d"):
        mean, target = mean[:, 0], target[:, 0]
    for sample_weight in (None, weight):
        kwargs = dict(sample_weight=sample_weight, reduction=reduction, hess=True)
        fast = fastloss.gaussian_nll(mean, target, var, **kwargs)
        slow = fastloss.reference.gaussian_nll(mean, target, var, **kwargs)
        assert fast.grad[1].shape == var.shape
        assert_results_close(fast, slow, dtype, scale=10.0)


def test_gaussian_nll_per_row_variance_is_the_full_variance_summed():
    """The kernel's per-row path (var (N, 1)) and its elementwise path (var expanded)
    give the same loss and mean gradient, and grad_var summed over each row."""
    rng = np.random.default_rng(3)
    mean, target, var = gaussian_inputs(rng, (5000, 9), np.float64)
    row_var = var[:, :1]
    weight = rng.uniform(0.5, 2.0, 5000)
    for reduction in REDUCTIONS:
        per_row = fastloss.gaussian_nll(mean, target, row_var, sample_weight=weight,
                                        reduction=reduction)
        full = fastloss.gaussian_nll(mean, target, np.repeat(row_var, 9, axis=1),
                                     sample_weight=weight, reduction=reduction)
        assert_close(per_row.loss, full.loss, np.float64)
        assert_close(per_row.grad[0], full.grad[0], np.float64)
        assert_close(per_row.grad[1], full.grad[1].sum(axis=1, keepdims=True), np.float64)


# --- accuracy against the exact oracle ------------------------------------------------------

BUDGET = {"reduced": 2.0, "per_sample": 4.0, "grad": 8.0}
# As for every loss in tests/test_accuracy.py: a float64 per-sample loss carries up to
# ~3 ulps, which a reduced loss dominated by one sample inherits, and the elementwise
# kernels' float64 sums over elements are plain sums.
FLOAT64_REDUCED = 4.0


def budget(dtype, kind):
    if kind == "reduced" and np.dtype(dtype) == np.float64:
        return FLOAT64_REDUCED
    return BUDGET["grad" if kind == "grad_var" else kind]


def exact_for(name, case, dtype, backend=None):
    """The oracle of a call in dtype (eps of gaussian_nll in dtype), in the arithmetic
    exact enough for dtype unless ``backend`` says otherwise."""
    backend = backend or oracle_more.backend_for(dtype)
    if name == "gaussian_nll":
        return oracle_more.gaussian_nll(*case.args, **case.params, dtype=dtype,
                                        sample_weight=case.sample_weight, backend=backend)
    return getattr(oracle_more, name)(*case.args, **case.params,
                                      sample_weight=case.sample_weight, backend=backend), None


def measured_errors(name, case, dtype, exact, var_parts):
    """{kind: [(label, errors)]} of fastloss.<name> on case, every reduction."""
    found = {"reduced": [], "per_sample": [], "grad": [], "grad_var": []}
    for reduction in REDUCTIONS:
        with np.errstate(all="ignore"):
            result = getattr(fastloss, name)(*case.args, **case.params,
                                             sample_weight=case.sample_weight,
                                             reduction=reduction)
        grads = grads_of(result)
        loss_errors, grad_errors = oracle.measure(result.loss, grads[0], exact, reduction,
                                                  dtype, case.sample_weight)
        found["per_sample" if reduction == "none" else "reduced"].append(
            (f"loss[{reduction}]", loss_errors))
        found["grad"].append((f"grad[{reduction}]", grad_errors))
        if var_parts is not None:
            values, scale = oracle_more.reduce_var(exact, var_parts, reduction,
                                                   case.sample_weight)
            found["grad_var"].append((f"grad_var[{reduction}]",
                                      oracle.ulp_error(grads[1], values, dtype, scale)))
    return found


def _cases(name, dtype):
    return adversarial_more.CASES[name](dtype)


ACCURACY = [
    pytest.param(name, dtype, index, id=f"{name}-{dtype}-{case.name}",
                 marks=[pytest.mark.slow] if dtype == "float64"
                 and case.args[0].size >= adversarial_more.MULTI_CHUNK else [])
    for name in NAMES for dtype in ("float32", "float64")
    for index, case in enumerate(_cases(name, dtype))
]


@pytest.mark.parametrize("name, dtype, index", ACCURACY)
def test_within_budget(name, dtype, index):
    """Every result on one adversarial input is within the accuracy budget."""
    case = _cases(name, dtype)[index]
    exact, var_parts = exact_for(name, case, dtype)
    failures = []
    for kind, found in measured_errors(name, case, dtype, exact, var_parts).items():
        for label, errors in found:
            if np.size(errors) == 0:
                continue
            worst = float(np.max(errors))
            if not worst <= budget(dtype, kind):
                failures.append(f"{label}: {worst:.3g} ulp > {budget(dtype, kind)} at flat "
                                f"index {int(np.argmax(errors))}")
    assert not failures, f"{name} {dtype} {case.name}:\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("name", NAMES)
def test_float64_oracle_agrees_with_mpmath(name):
    """The float64 oracle used for float32 results is within 1/64 ulp of mpmath's,
    on every float32 case of at most 500 elements."""
    checked = 0
    for case in _cases(name, "float32"):
        if np.size(case.args[0]) > 500:
            continue
        fast, _ = exact_for(name, case, "float32")
        slow, _ = exact_for(name, case, "float32", backend=oracle.MP)
        for reduction in REDUCTIONS:
            loss, _, grad, _ = oracle.reduce(fast, reduction)
            mp_loss, mp_loss_scale, mp_grad, mp_grad_scale = oracle.reduce(slow, reduction)
            for label, value, mp_value, mp_scale in (("loss", loss, mp_loss, mp_loss_scale),
                                                     ("grad", grad, mp_grad, mp_grad_scale)):
                errors = oracle.ulp_error(value, mp_value, np.float32, mp_scale, stored=False)
                finite = np.isfinite(np.asarray(oracle._split(oracle._as_array(mp_value))[0]))
                worst = np.max(np.where(finite, errors, 0.0), initial=0.0)
                assert worst <= 1 / 64, (case.name, reduction, label, worst)
        checked += 1
    assert checked > 0


def test_oracle_closed_forms():
    """The oracle at points where the loss has a closed form (computed here by math)."""
    ex = oracle_more.log_cosh(np.array([1.0, 0.0, -30.0]), np.zeros(3))
    assert float(ex.loss[0]) == pytest.approx(math.log(math.cosh(1.0)), rel=1e-15)
    assert float(ex.loss[1]) == 0.0 and float(ex.grad[1]) == 0.0
    assert float(ex.loss[2]) == pytest.approx(30.0 - math.log(2.0), rel=1e-15)
    assert float(ex.grad[0]) == pytest.approx(math.tanh(1.0), rel=1e-15)
    ex = oracle_more.poisson_nll(np.array([0.0, math.log(3.0)]), np.array([1.0, 3.0]))
    assert float(ex.loss[0]) == 1.0 and float(ex.grad[0]) == 0.0
    assert float(ex.grad[1]) == pytest.approx(0.0, abs=1e-15)
    ex = oracle_more.sigmoid_focal_loss(np.array([0.0]), np.array([1.0]), alpha=-1.0, gamma=2.0)
    assert float(ex.loss[0]) == pytest.approx(math.log(2.0) / 4, rel=1e-15)
    ex, _ = oracle_more.gaussian_nll(np.array([1.0]), np.array([0.0]), np.array([1.0]),
                                     full=True)
    assert float(ex.loss[0]) == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi), rel=1e-15)
    ex = oracle_more.pinball(np.array([0.0, 0.0]), np.array([2.0, -2.0]), quantile=0.25)
    assert [float(v) for v in ex.loss] == [0.5, 1.5]
    assert [float(v) for v in ex.grad] == [-0.25, 0.75]


# --- derivatives -------------------------------------------------------------------------

def smooth_inputs(spec, option, seed=4):
    """float64 inputs away from every kink (|r| >= 0.05 from 0 and from beta, var above
    eps: below it the gradient is passed straight through, see
    test_gaussian_nll_gradient_below_eps_is_passed_straight_through), so that the
    central differences below do not straddle one."""
    args = list(inputs_for(spec, (6, 3), np.float64, seed))
    if spec.name == "gaussian_nll":
        args[2] = np.maximum(args[2], spec.options[option].get("eps", 1e-6) + 0.1)
    if spec.name in ("l1", "smooth_l1", "pinball", "log_cosh"):
        beta = spec.options[option].get("beta", 1.0)
        r = args[0] - args[1]
        for kink in (0.0, beta, -beta):
            near = np.abs(r - kink) < 0.05
            args[0] = np.where(near, args[0] + 0.2, args[0])
            r = args[0] - args[1]
    return args


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("spec, option", VARIANTS)
def test_gradient_matches_finite_differences(spec, option, reduction, weighted):
    args = smooth_inputs(spec, option)
    weight = np.linspace(0.5, 2.0, 6) if weighted else None
    kwargs = dict(spec.options[option], sample_weight=weight, reduction=reduction)
    result = spec.fast(*args, **kwargs)
    for position, grad in enumerate(grads_of(result)):
        index = 0 if position == 0 else 2         # pred / mean, then var

        def loss_at(x):
            moved = list(args)
            moved[index] = x
            return spec.fast(*moved, **kwargs, grad=False).loss

        numeric = finite_difference_gradient(loss_at, args[index], step=1e-5)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("spec, option", HESS_VARIANTS)
def test_hessian_matches_finite_differences_of_the_gradient(spec, option, reduction):
    args = smooth_inputs(spec, option, seed=5)
    weight = np.linspace(0.5, 2.0, 6)
    kwargs = dict(spec.options[option], sample_weight=weight, reduction=reduction)
    result = spec.fast(*args, **kwargs, hess=True)
    assert isinstance(result, fastloss.LossGradHess)
    step = 1e-6
    for k in np.ndindex(args[0].shape):
        up, down = [a.copy() for a in args], [a.copy() for a in args]
        up[0][k] += step
        down[0][k] -= step
        g_up = grads_of(spec.fast(*up, **kwargs))[0][k]
        g_down = grads_of(spec.fast(*down, **kwargs))[0][k]
        numeric = (g_up - g_down) / (2 * step)
        assert result.hess[k] == pytest.approx(numeric, rel=1e-5, abs=1e-8), k
    slow = spec.reference(*args, **kwargs, hess=True)
    assert_close(result.hess, slow.hess, np.float64)


@pytest.mark.parametrize("module", ["fast", "reference"])
@pytest.mark.parametrize("name", ["l1", "pinball"])
def test_piecewise_linear_losses_offer_no_hessian(name, module):
    function = getattr(fastloss if module == "fast" else fastloss.reference, name)
    pred, target = regression_inputs(np.random.default_rng(0), (10,), np.float64)
    before = snapshot(pred, target)
    with pytest.raises(ValueError, match="no Hessian"):
        function(pred, target, hess=True, out=pred)
    assert_unchanged(before, [pred, target])
    assert function(pred, target, hess=False).grad.shape == (10,)


def test_smooth_l1_hessian_is_one_over_beta_inside_zero_outside():
    pred = np.array([0.1, -0.2, 0.5, 3.0, -4.0, np.nan])
    result = fastloss.smooth_l1(pred, np.zeros(6), beta=0.5, reduction="sum", hess=True)
    np.testing.assert_array_equal(result.hess, [2.0, 2.0, 0.0, 0.0, 0.0, np.nan])
    # beta = 0 is l1: every element in the linear zone
    l1 = fastloss.l1(pred[:5], np.zeros(5), reduction="sum")
    zero = fastloss.smooth_l1(pred[:5], np.zeros(5), beta=0.0, reduction="sum", hess=True)
    assert zero.loss == l1.loss
    np.testing.assert_array_equal(zero.grad, l1.grad)
    np.testing.assert_array_equal(zero.hess, np.zeros(5))


def test_subgradients_at_the_kinks():
    """l1: 0 at r = 0 (torch); pinball: -q at r' = 0 (scikit-learn, LightGBM)."""
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    for dtype in DTYPES:
        result = fastloss.l1(x.astype(dtype), x.astype(dtype), reduction="none")
        np.testing.assert_array_equal(result.grad, 0.0)
        result = fastloss.pinball(x.astype(dtype), x.astype(dtype), quantile=0.3,
                                  reduction="none")
        np.testing.assert_array_equal(result.grad, dtype(-0.3))
        np.testing.assert_array_equal(result.loss, 0.0)


# --- out=, in place, layouts, threads --------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("spec, option", VARIANTS)
def test_out_and_in_place(spec, option, dtype):
    args = inputs_for(spec, (300, 5), dtype, seed=6)
    kwargs = dict(spec.options[option], reduction="mean")
    fresh = spec.fast(*args, **kwargs)
    out = np.empty_like(args[0])
    into = spec.fast(*args, **kwargs, out=out)
    assert grads_of(into)[0] is out
    np.testing.assert_array_equal(out, grads_of(fresh)[0])
    assert into.loss == fresh.loss
    pred = args[0].copy()
    in_place = spec.fast(pred, *args[1:], **kwargs, out=pred)
    assert grads_of(in_place)[0] is pred
    np.testing.assert_array_equal(pred, grads_of(fresh)[0])
    assert in_place.loss == fresh.loss
    for module in (spec.fast, spec.reference):
        with pytest.raises(ValueError, match="out"):
            module(*args, **kwargs, out=np.empty(args[0].shape, np.float16))


@pytest.mark.parametrize("var_shape", ["same", "(N, 1)", "(1, K)"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_gaussian_nll_out_var_and_var_in_place(dtype, var_shape):
    mean, target, var = gaussian_inputs(np.random.default_rng(7), (200, 6), dtype)
    var = {"same": var, "(N, 1)": var[:, :1].copy(), "(1, K)": var[:1].copy()}[var_shape]
    fresh = fastloss.gaussian_nll(mean, target, var)
    for module in (fastloss, fastloss.reference):
        out_var = np.empty_like(var)
        result = module.gaussian_nll(mean, target, var, out_var=out_var)
        assert result.grad[1] is out_var
        assert_close(out_var, fresh.grad[1], dtype)
        in_place = var.copy()
        mean_copy = mean.copy()
        result = module.gaussian_nll(mean_copy, target, in_place, out=mean_copy,
                                     out_var=in_place)
        assert result.grad[0] is mean_copy and result.grad[1] is in_place
        assert_close(in_place, fresh.grad[1], dtype)
        assert_close(mean_copy, fresh.grad[0], dtype)
        assert result.loss == pytest.approx(fresh.loss, rel=1e-6)
        for bad in (np.empty(var.shape, np.float16), np.empty((3,) + var.shape, dtype)):
            with pytest.raises(ValueError, match="out_var"):
                module.gaussian_nll(mean, target, var, out_var=bad)
        with pytest.raises(ValueError, match="out_var .*grad=False"):
            module.gaussian_nll(mean, target, var, grad=False, out_var=np.empty_like(var))
        with pytest.raises(ValueError, match="out_var must not share memory with mean"):
            module.gaussian_nll(mean, target, mean, out_var=mean)


@pytest.mark.parametrize("spec, option", VARIANTS)
def test_layouts_and_integer_inputs(spec, option):
    args = inputs_for(spec, (40, 6), np.float64, seed=8)
    kwargs = dict(spec.options[option], reduction="sum")
    want = spec.fast(*args, **kwargs)
    strided = [np.asfortranarray(a) for a in args]
    read_only = [a.copy() for a in args]
    for a in read_only:
        a.flags.writeable = False
    for variant in (strided, read_only, [a.tolist() for a in args]):
        got = spec.fast(*variant, **kwargs)
        assert got.loss == pytest.approx(want.loss, rel=1e-12)
    counts = [np.rint(np.abs(a)).astype(np.int64) + (1 if k == 2 else 0)
              for k, a in enumerate(args)]
    if spec.name == "sigmoid_focal_loss":
        counts[1] = np.clip(counts[1], 0, 1)
    got = spec.fast(*counts, **kwargs)
    assert grads_of(got)[0].dtype == np.float64
    assert got.loss == pytest.approx(spec.reference(*counts, **kwargs).loss, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("spec, option", VARIANTS)
def test_bit_identical_for_every_thread_count(spec, option, dtype):
    args = inputs_for(spec, (20_000, 5), dtype, seed=9)      # several chunks
    weight = np.random.default_rng(10).uniform(0.5, 2.0, 20_000)
    for reduction in REDUCTIONS:
        results = [spec.fast(*args, **spec.options[option], sample_weight=weight,
                             reduction=reduction, n_threads=n) for n in (1, 2, 3)]
        for other in results[1:]:
            np.testing.assert_array_equal(other.loss, results[0].loss)
            for a, b in zip(grads_of(other), grads_of(results[0])):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spec, option", VARIANTS)
def test_a_mean_over_nothing_is_zero(spec, option):
    for shape, weight in (((0,), None), ((0, 3), None), ((4, 3), np.zeros(4))):
        args = inputs_for(spec, shape, np.float64)
        result = spec.fast(*args, **spec.options[option], sample_weight=weight)
        assert result.loss == 0.0
        for grad in grads_of(result):
            assert not grad.any()


# --- extreme and non-finite values ----------------------------------------------------------

EXTREMES = np.array([1e4, -1e4, 3e38, -3e38, 0.0, 0.5, -0.5, 2.0, 20.0, -20.0, 1e-30, 88.5])


def extreme_args(spec, dtype):
    """Predictions at the extremes beside moderate targets (variances, counts)."""
    n = EXTREMES.size
    rng = np.random.default_rng(11)
    pred = EXTREMES.astype(dtype)
    if spec.name == "poisson_nll":
        pred = np.abs(pred) if spec.make_inputs is rate_inputs else pred
        return pred, rng.poisson(2.0, n).astype(dtype)
    if spec.name == "sigmoid_focal_loss":
        return pred, np.array([0, 1, 0.5, 1, 0, 1, 0, 0.3, 1, 1, 0.5, 0], dtype=dtype)
    if spec.name == "gaussian_nll":
        return pred, rng.normal(size=n).astype(dtype), rng.uniform(0.5, 2, n).astype(dtype)
    return pred, rng.normal(size=n).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec, option", VARIANTS)
def test_extreme_predictions_are_within_budget(spec, option, dtype):
    args = extreme_args(spec, np.dtype(dtype))
    case = adversarial_more.Case("extremes", args, spec.options[option])
    exact, var_parts = exact_for(spec.name, case, dtype)
    for kind, found in measured_errors(spec.name, case, dtype, exact, var_parts).items():
        for label, errors in found:
            assert np.max(errors) <= budget(dtype, kind), (label, np.max(errors))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("spec, option", VARIANTS)
def test_nan_and_inf_predictions_stay_in_their_rows(spec, option, dtype):
    args = list(inputs_for(spec, (8, 3), dtype, seed=12))
    args[0][2, 1] = np.nan
    args[0][5, 0] = np.inf
    args[0][6, 2] = -np.inf
    kwargs = dict(spec.options[option], reduction="none")
    with np.errstate(all="ignore"):
        fast = spec.fast(*args, **kwargs)
        slow = spec.reference(*args, **kwargs)
    assert np.isnan(fast.loss[2, 1]) and np.isnan(grads_of(fast)[0][2, 1])
    untouched = np.ones((8, 3), bool)
    untouched[[2, 5, 6]] = False
    assert np.isfinite(fast.loss[untouched]).all()
    assert np.isfinite(grads_of(fast)[0][untouched]).all()
    # the infinite predictions: the limits the reference computes (NaN where it does)
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(grads_of(fast)[0], grads_of(slow)[0], rtol=1e-5, atol=1e-30,
                               equal_nan=True)
    total = spec.fast(*args, **dict(spec.options[option], reduction="sum"))
    assert np.isnan(total.loss)


# --- bad input ---------------------------------------------------------------------------------

BAD_PARAMETERS = [
    ("pinball", {"quantile": q}, "quantile") for q in (0.0, 1.0, -0.1, 1.5, np.nan)
] + [
    ("smooth_l1", {"beta": b}, "beta") for b in (-0.1, np.nan, np.inf)
] + [
    ("sigmoid_focal_loss", {"alpha": a}, "alpha") for a in (1.5, np.nan, -np.inf)
] + [
    ("sigmoid_focal_loss", {"gamma": g}, "gamma") for g in (-1.0, np.nan, np.inf)
] + [
    ("poisson_nll", {"eps": -1e-8}, "eps"), ("gaussian_nll", {"eps": -1.0}, "eps"),
    ("gaussian_nll", {"eps": np.nan}, "eps"),
]


@pytest.mark.parametrize("module", ["fast", "reference"])
@pytest.mark.parametrize("name, params, word", BAD_PARAMETERS,
                         ids=[f"{n}-{p}" for n, p, _ in BAD_PARAMETERS])
def test_a_bad_parameter_is_a_value_error(name, params, word, module):
    spec = next(s for s in SPECS if s.name == name)
    args = inputs_for(spec, (20,), np.float64)
    before = snapshot(*args)
    function = spec.fast if module == "fast" else spec.reference
    with pytest.raises(ValueError, match=word):
        function(*args, **params, out=args[0])
    assert_unchanged(before, args)


@pytest.mark.parametrize("module", ["fast", "reference"])
def test_non_boolean_flags_and_non_real_parameters_are_type_errors(module):
    m = fastloss if module == "fast" else fastloss.reference
    x = np.zeros(4)
    with pytest.raises(TypeError, match="log_input"):
        m.poisson_nll(x, x, log_input="yes")
    with pytest.raises(TypeError, match="full"):
        m.gaussian_nll(x, x, np.ones(4), full=1)
    with pytest.raises(TypeError, match="quantile"):
        m.pinball(x, x, quantile="0.5")


BAD_VALUES = [
    ("poisson_nll", 1, v, "finite counts >= 0") for v in (-1.0, -1e-30, np.nan, np.inf)
] + [
    ("sigmoid_focal_loss", 1, v, r"probabilities in \[0, 1\]") for v in (1.5, -1e-7, np.nan)
] + [
    ("gaussian_nll", 2, v, "variances >= 0") for v in (-1.0, -1e-30, -np.inf)
]


@pytest.mark.parametrize("module", ["fast", "reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in_place"])
@pytest.mark.parametrize("shape", [(72_000,), (9_000, 8)], ids=["1d", "2d"])
@pytest.mark.parametrize("name, position, bad, message", BAD_VALUES,
                         ids=[f"{n}-{v}" for n, _, v, _ in BAD_VALUES])
def test_a_bad_target_or_variance_is_named_and_nothing_is_written(name, position, bad, message,
                                                                  shape, in_place, dtype,
                                                                  module):
    spec = next(s for s in SPECS if s.name == name)
    args = list(inputs_for(spec, shape, dtype, seed=13))
    where = tuple(n * 2 // 3 + 1 for n in shape)          # in a later chunk
    args[position][where] = bad
    label = ["target", "target", "var"][position]
    expected = rf"{label}\[{', '.join(str(k) for k in where)}\] = {str(dtype(bad))}$"
    before = snapshot(*args)
    function = spec.fast if module == "fast" else spec.reference
    for options in ({}, {"sample_weight": np.ones(shape[0])}):
        for reduction in REDUCTIONS:
            with pytest.raises(ValueError, match=message + ".*" + expected):
                function(*args, reduction=reduction, out=args[0] if in_place else None,
                         **options)
            assert_unchanged(before, args)
    if name == "gaussian_nll":
        with pytest.raises(ValueError, match=expected):
            function(*args, out_var=args[2])
        assert_unchanged(before, args)


def test_nan_variance_propagates_and_zero_variance_is_clamped():
    mean, target = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    result = fastloss.gaussian_nll(mean, target, np.array([np.nan, 1.0, 0.0]), eps=0.5,
                                   reduction="none")
    assert np.isnan(result.loss[0]) and np.isnan(result.grad[0][0])
    assert np.isfinite(result.loss[1:]).all()
    assert result.loss[2] == pytest.approx(0.5 * (math.log(0.5) + 9.0 / 0.5), rel=1e-15)


@pytest.mark.parametrize("module", ["fast", "reference"])
def test_a_bad_sample_weight_is_named(module):
    m = fastloss if module == "fast" else fastloss.reference
    for spec in SPECS:
        args = inputs_for(spec, (9_000, 8), np.float64, seed=14)
        weight = np.ones(9_000)
        weight[6_001] = np.nan
        before = snapshot(*args)
        with pytest.raises(ValueError, match=r"sample_weight\[6001\] = nan"):
            getattr(m, spec.name)(*args, sample_weight=weight, out=args[0])
        assert_unchanged(before, args)
        with pytest.raises(ValueError, match=r"sample_weight\[6001\] = nan"):
            getattr(m, spec.name)(*args, sample_weight=weight)


@pytest.mark.parametrize("module", ["fast", "reference"])
@pytest.mark.parametrize("var_shape", [(30, 4, 1), (31, 4), (30, 3), (4,), (2, 4)])
def test_gaussian_nll_refuses_a_variance_shape_torch_refuses(var_shape, module):
    m = fastloss if module == "fast" else fastloss.reference
    mean = np.zeros((30, 4))
    with pytest.raises(ValueError, match=r"var must have the shape of mean \(30, 4\)"):
        m.gaussian_nll(mean, mean, np.ones(var_shape))
    torch = pytest.importorskip("torch")
    with pytest.raises((ValueError, RuntimeError)):
        torch.nn.functional.gaussian_nll_loss(torch.zeros(30, 4), torch.zeros(30, 4),
                                              torch.ones(var_shape))


# --- torch parity ----------------------------------------------------------------------------

def torch_parity(ours, theirs, inputs, dtype, rtol):
    """ours(reduction) -> LossGrad; theirs(tensors, reduction) -> torch loss; inputs a
    list of arrays of which those to differentiate come first (len(result grads))."""
    torch = pytest.importorskip("torch")
    for reduction in REDUCTIONS:
        result = ours(reduction)
        grads = grads_of(result)
        tensors = [torch.tensor(a, requires_grad=k < len(grads)) for k, a in enumerate(inputs)]
        loss = theirs(tensors, reduction)
        (loss.sum() if reduction == "none" else loss).backward()
        np.testing.assert_allclose(result.loss, loss.detach().numpy(), rtol=rtol, atol=1e-30)
        for grad, tensor in zip(grads, tensors):
            np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=rtol,
                                       atol=1e-6 if dtype == np.float32 else 1e-14)


RTOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("beta", [None, 1.0, 0.25, 0.0])
def test_l1_and_smooth_l1_match_torch(beta, dtype):
    F = pytest.importorskip("torch.nn.functional")
    pred, target = regression_inputs(np.random.default_rng(15), (60, 3), dtype)
    pred[:3] = target[:3]                                # r = 0: the subgradient 0
    if beta is None:
        torch_parity(lambda red: fastloss.l1(pred, target, reduction=red),
                     lambda t, red: F.l1_loss(t[0], t[1], reduction=red),
                     [pred, target], dtype, RTOL[dtype])
    else:
        torch_parity(lambda red: fastloss.smooth_l1(pred, target, beta=beta, reduction=red),
                     lambda t, red: F.smooth_l1_loss(t[0], t[1], reduction=red, beta=beta),
                     [pred, target], dtype, RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"full": True}, {"log_input": False},
                                     {"log_input": False, "full": True, "eps": 0.25}],
                         ids=["default", "full", "rates", "rates-full-eps"])
def test_poisson_nll_matches_torch(options, dtype):
    F = pytest.importorskip("torch.nn.functional")
    maker = rate_inputs if options.get("log_input") is False else count_inputs
    pred, target = maker(np.random.default_rng(16), (50, 4), dtype)
    target[:2] = np.array([0.0, 1.0, 1.5, 40.0], dtype=dtype)     # Stirling's t > 1 edge
    torch_parity(lambda red: fastloss.poisson_nll(pred, target, **options, reduction=red),
                 lambda t, red: F.poisson_nll_loss(t[0], t[1], reduction=red, **options),
                 [pred, target], dtype, RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("var_shape", ["same", "(N, 1)", "(N,)", "(1, K)", "1d-scalar",
                                       "1d-(1,)", "1d-same"])
def test_gaussian_nll_matches_torch_for_every_variance_shape(var_shape, full, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(17)
    mean, target, var = gaussian_inputs(rng, (40, 5), dtype)
    var[::7] = 1e-9                   # below eps: clamped, the gradient passed through
    var = {"same": var, "(N, 1)": var[:, :1], "(N,)": var[:, 0], "(1, K)": var[:1],
           "1d-scalar": np.asarray(var[1, 0]), "1d-(1,)": var[1, :1], "1d-same": var[:, 0]
           }[var_shape]
    if var_shape.startswith("1d"):
        mean, target = mean[:, 0], target[:, 0]
    torch_parity(
        lambda red: fastloss.gaussian_nll(mean, target, var, full=full, reduction=red),
        lambda t, red: F.gaussian_nll_loss(t[0], t[2], t[1], full=full, reduction=red),
        [mean, var, target], dtype, RTOL[dtype] * 10)


def test_gaussian_nll_gradient_below_eps_is_passed_straight_through():
    """torch clamps var without a gradient: d loss / d var is taken at eps, not 0."""
    mean, target = np.array([1.0, 0.5]), np.zeros(2)
    var = np.array([1e-9, 0.0])
    _, (_, grad_var) = fastloss.gaussian_nll(mean, target, var, eps=1e-3, reduction="sum")
    expected = 0.5 * (1 / 1e-3 - np.array([1.0, 0.25]) / 1e-3 ** 2)
    np.testing.assert_allclose(grad_var, expected, rtol=1e-14)


def torchvision_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, as published (BSD-3-Clause), in torch ops."""
    import torch
    p = torch.sigmoid(inputs)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets,
                                                                   reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 2.0), (0.6, 0.0), (0.25, 1.5),
                                          (1.0, 3.0)])
def test_sigmoid_focal_loss_matches_torchvisions_formula_under_autograd(alpha, gamma, dtype):
    pytest.importorskip("torch")
    logits, target = unit_inputs(np.random.default_rng(18), (60, 4), dtype)
    logits = np.clip(logits, -6, 6)           # where the textbook formula is accurate
    torch_parity(
        lambda red: fastloss.sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma,
                                                reduction=red),
        lambda t, red: torchvision_sigmoid_focal_loss(t[0], t[1], alpha, gamma, red),
        [logits, target], dtype, RTOL[dtype] * 20)


def test_sigmoid_focal_loss_is_finite_where_the_textbook_formula_is_not():
    """Computed from the logits: no log of a rounded probability."""
    logits = np.array([60.0, -60.0, 800.0, -800.0], dtype=np.float32)
    target = np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)
    result = fastloss.sigmoid_focal_loss(logits, target, alpha=-1.0, reduction="none")
    assert np.all(np.isfinite(result.loss)) and np.all(result.loss >= 0)
    assert np.all(np.isfinite(result.grad))
    # far on the wrong side: the loss is |x| q^2 with q ~ 1
    wrong = fastloss.sigmoid_focal_loss(np.array([-800.0]), np.array([1.0]), alpha=-1.0,
                                        reduction="sum")
    assert wrong.loss == pytest.approx(800.0, rel=1e-12)



def _with_both_lane_widths(call):
    """call() with the elementwise kernels' AVX-512 lanes taken, then without:
    the two results (skips where the CPU or the build has no such lanes)."""
    from fastloss import _dispatch
    kernels = _dispatch.elementwise_kernels
    results = []
    try:
        for wide in (True, False):
            if kernels.set_wide_lanes(wide) != wide:
                pytest.skip("this CPU (or build) has no AVX-512 lanes")
            results.append(call())
    finally:
        kernels.set_wide_lanes(_dispatch.WIDE_LANES)
    return results


def _assert_same_bits(wide, narrow, fields):
    for wide_result, narrow_result in zip(wide, narrow):
        for field in fields:
            np.testing.assert_array_equal(np.asarray(getattr(wide_result, field)),
                                          np.asarray(getattr(narrow_result, field)))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 1.5])
@pytest.mark.parametrize("alpha", [-1.0, 0.25])
def test_sigmoid_focal_loss_lane_widths_give_the_same_bits(gamma, alpha):
    """The focal loss's 512-bit passes (CPUs with AVX-512) apply the same
    operations lane by lane as the 8 AVX2 lanes: the same per-sample losses,
    gradients and totals, bit for bit, extremes and a ragged end included."""
    rng = np.random.default_rng(7)
    n = 4 * 256 + 37                                     # chunks of 256, a ragged end
    x = (rng.standard_normal(n) * 6).astype(np.float32)
    x[:12] = [1e4, -1e4, 3e38, -3e38, np.inf, -np.inf, -0.0, 0.0, 104.5, -104.5, 88.0, 1e-30]
    t = rng.random(n).astype(np.float32)
    t[::5], t[1::5], t[2::7] = 0.0, 1.0, 0.5
    wide, narrow = _with_both_lane_widths(lambda: [
        fastloss.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction=reduction,
                                    n_threads=1)
        for reduction in ("none", "mean", "sum")])
    _assert_same_bits(wide, narrow, ("loss", "grad"))


@pytest.mark.parametrize("weighted", [False, True])
def test_log_cosh_lane_widths_give_the_same_bits(weighted):
    """log_cosh's 16 AVX-512 lanes apply the same operations lane by lane as
    the 8 AVX2 lanes, and add the losses to the same double lanes in the same
    order: the same losses, gradients, Hessians and totals, bit for bit."""
    rng = np.random.default_rng(11)
    n = 3 * 16 + 8 + 5                                   # 16s, an 8 and a ragged end
    pred = (rng.standard_normal(n) * 3).astype(np.float32)
    target = (rng.standard_normal(n) * 3).astype(np.float32)
    pred[:8] = [0.0, -0.0, 0.99999994, 1.0, -1.0000001, 50.0, -60.0, 1e-20]
    weight = rng.random(n).astype(np.float32) if weighted else None
    wide, narrow = _with_both_lane_widths(lambda: [
        fastloss.log_cosh(pred, target, reduction=reduction, hess=True, sample_weight=weight,
                          n_threads=1)
        for reduction in ("none", "mean", "sum")])
    _assert_same_bits(wide, narrow, ("loss", "grad", "hess"))


@pytest.mark.parametrize("name, kwargs", [("l1", {}), ("pinball", {"quantile": 0.3}),
                                          ("pinball", {"quantile": 0.9})])
def test_l1_and_pinball_spans_match_the_element_loop(name, kwargs):
    """float32 calls with one weight for the span take the hand-written span
    (fl_simple_span_float's FL_L1 and FL_PINBALL); unit sample weights take
    the element loop.  Both give the same per-sample losses and totals, bit
    for bit (each from the exact double difference), extremes and a ragged
    end included; the gradients agree to one rounding (the span scales the
    float gradient by fl(w grad_scale), as the float lanes always did, the
    weighted loop rounds w grad_scale grad once)."""
    rng = np.random.default_rng(3)
    n = 8 * 37 + 5
    pred = (rng.standard_normal(n) * 4).astype(np.float32)
    target = (rng.standard_normal(n) * 4).astype(np.float32)
    pred[:10] = [0.0, -0.0, np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 1.0, 2.0]
    target[:10] = [-0.0, 0.0, 1.0, 1.0, 1.0, -3e38, 3e38, -1e-45, np.nan, 2.0]
    loss = getattr(fastloss, name)
    for reduction in ("none", "mean", "sum"):
        span = loss(pred, target, reduction=reduction, n_threads=1, **kwargs)
        loop = loss(pred, target, reduction=reduction, n_threads=1,
                    sample_weight=np.ones(n, np.float32), **kwargs)
        np.testing.assert_array_equal(np.asarray(span.loss), np.asarray(loop.loss))
        np.testing.assert_allclose(span.grad, loop.grad, rtol=2.0**-23, atol=0.0)
