"""The registry (fastloss._registry): everything that derives from it, and everything it requires.

Every public function of fastloss is declared once.  These tests fail when a
registered function lacks what the project promises for it:

* the same name, signature (type hints included) and docstring in
  ``fastloss`` and ``fastloss.reference``, an optax-style docstring, and the
  declared parameters and their rules applied by both faces;
* a test case (tests/cases.py) with an exact oracle, adversarial inputs
  (tests/adversarial.py) and, where torch has the loss, a torch call that the
  parity test below runs;
* a benchmark case (bench/cases.py);
* its row in the README's loss table, which must be the registry's.

They also prove that ``import fastloss`` loads neither the NumPy reference nor
any demo code, and that the declarations can describe a loss with three
inputs and two gradients (a Gaussian negative log-likelihood).
"""
from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import adversarial
import cases
import fastloss
import fastloss.reference as reference
from fastloss import _checks, _registry
from fastloss._registry import REGISTRY, Loss
from helpers import assert_close, finite_difference_gradient

ROOT = Path(__file__).resolve().parent.parent
NAMES = list(REGISTRY)
LOSSES = [name for name, spec in REGISTRY.items() if spec.family in _registry.LOSS_FAMILIES]
WITH_TORCH = [name for name in LOSSES if REGISTRY[name].torch]
CASE_NAMES = {case.name for case in cases.ALL_CASES}


def _case(name):
    return next(case for case in cases.ALL_CASES if case.name == name)


# --- the names and the two faces ---------------------------------------------------------

def test_the_public_names_are_the_registry():
    assert fastloss.__all__ == ["LossGrad", "LossGradHess", *NAMES, "show_config",
                                "LinearCrossEntropyGrad"]
    assert reference.__all__ == ["LossGrad", "LossGradHess", *NAMES, "LinearCrossEntropyGrad"]
    for name, spec in REGISTRY.items():
        assert getattr(fastloss, name) is spec.function
        assert spec.family in _registry.FAMILIES


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_twin_has_the_same_signature_and_docstring(name):
    fast, twin = getattr(fastloss, name), getattr(reference, name)
    assert twin is not fast and twin.__module__ == "fastloss.reference"
    assert inspect.signature(twin) == inspect.signature(fast)     # type hints included
    assert twin.__doc__ == fast.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_docstrings_and_type_hints(name):
    """optax style: a one-line summary, Args, Returns, a doctest example of it; every argument
    and the result annotated."""
    function = REGISTRY[name].function
    doc = function.__doc__
    summary, blank = doc.splitlines()[:2]
    assert summary.strip() and not blank.strip(), "a one-line summary, then a blank line"
    for section in ("Args:", "Returns:", "Examples:", ">>> import ", f"fastloss.{name}("):
        assert section in doc, f"{name}'s docstring has no {section!r}"
    if REGISTRY[name].family in _registry.LOSS_FAMILIES:
        assert "::" in doc, f"{name}'s docstring gives no formula block"
    signature = inspect.signature(function)
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, (name, parameter.name)
    assert signature.return_annotation is not inspect.Signature.empty


@pytest.mark.parametrize("name", LOSSES)
def test_the_signature_is_the_declaration(name):
    spec = REGISTRY[name]
    parameters = inspect.signature(spec.function).parameters
    assert tuple(parameters)[:len(spec.inputs)] == spec.inputs
    keywords = {n: p.default for n, p in parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keywords == spec.keyword_defaults()
    assert ("hess" in keywords) == spec.takes_hess


def test_a_declaration_that_disagrees_with_its_function_is_refused():
    spec = Loss("not_registered", "elementwise", params=(_checks.Real("delta", 1.0),))

    def not_registered(pred, target, *, delta=2.0, sample_weight=None, reduction="mean",
                       grad=True, out=None, n_threads=None):
        """Docstring."""

    with pytest.raises(TypeError, match="delta"):
        spec.declare(not_registered)
    assert "not_registered" not in REGISTRY


# --- the declared parameter rules are what both faces apply -----------------------------

def _bad_values(param, shape):
    """(value, exception) pairs that the parameter's declared rule refuses (predictions of
    ``shape``)."""
    if isinstance(param, _checks.Real):
        bad = [("1", TypeError), (float("nan"), ValueError)]
        if param.low is not None:
            bad.append((param.low if param.low_open else param.low - 1.0, ValueError))
        if param.high is not None:
            bad.append((param.high if param.high_open else param.high + 1.0, ValueError))
        else:
            bad.append((float("inf"), ValueError))
        return bad
    if isinstance(param, _checks.Choice):
        return [("no such " + param.name, ValueError)]
    if isinstance(param, _checks.Flag):
        return [("yes", TypeError)] if param.strict else []
    if isinstance(param, _checks.OptionalIndex):
        return [(1.5, TypeError), (True, TypeError)]
    if isinstance(param, _checks.Weights):
        size = shape[-1]
        return [(np.full(size, np.nan), ValueError), (np.ones(size + 1), ValueError),
                ("2", TypeError)]
    raise AssertionError(f"no bad values for the parameter kind {param.kind!r}")


PARAMETERS = [(name, param) for name in LOSSES for param in REGISTRY[name].params]


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("name,param", PARAMETERS,
                         ids=[f"{name}-{param.name}" for name, param in PARAMETERS])
def test_declared_parameter_rules_are_applied(module, name, param):
    case = _case(name)
    shape = (6, 3) if 2 in case.ndims else (6,)
    pred, target = case.make_inputs(np.random.default_rng(0), shape, np.float64)
    # (the default option's further inputs: gaussian_nll's var)
    base = {key: value for key, value in case.options["default"](shape).items()
            if key in REGISTRY[name].inputs}
    function = getattr(module, name)
    function(pred, target, **base, **{param.name: param.default})
    assert param.kind in ("real", "optional real", "flag", "choice", "index", "weights")
    for value, error in _bad_values(param, shape):
        with pytest.raises(error, match=param.name):
            function(pred, target, **base, **{param.name: value})


# --- every registered loss has its cases ----------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_has_a_test_case_with_an_oracle(name):
    assert name in CASE_NAMES, f"tests/cases.py has no LossCase for {name}"
    assert callable(cases.ORACLES[name])


def test_every_row_utility_has_a_test_case_with_an_oracle():
    rows = [name for name, spec in REGISTRY.items() if spec.family == "rows"]
    assert [utility.name for utility in cases.UTILITIES] == rows
    assert all(callable(cases.ORACLES[name]) for name in rows)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", adversarial.FUNCTIONS)
def test_every_function_has_adversarial_inputs_its_oracle_takes(name, dtype):
    calls = adversarial.calls(name, dtype)
    assert calls, f"tests/adversarial.py gives no inputs for {name}"
    small = min(calls, key=lambda call: sum(np.size(a) for a in call.args))
    import oracle
    exact = oracle.exact_for(name, small, oracle.backend_for(dtype))
    assert exact is not None


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_has_a_benchmark_case(name):
    sys.path.insert(0, str(ROOT))
    try:
        from bench import cases as bench_cases
    finally:
        sys.path.remove(str(ROOT))
    shape = (64, 5) if 2 in REGISTRY[name].ndims else (64,)
    data = bench_cases.make_inputs(name, shape, np.float32)
    bench_cases.make_floor(name, data)()
    loss, _ = bench_cases.make_fastloss(name, data, 1)()
    expected, _ = bench_cases.make_reference(name, data, 1)()
    assert_close(loss, expected, np.float32, scale=10.0)
    if REGISTRY[name].torch:
        pytest.importorskip("torch")
        value, _ = bench_cases.make_torch(name, data, 1)()
        assert np.isfinite(value)


# --- the README's loss table ---------------------------------------------------------------

def test_the_readme_loss_table_is_the_registrys():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(_registry.TABLE_START) + len(_registry.TABLE_START)
    table = readme[start:readme.index(_registry.TABLE_END)].strip()
    assert table == _registry.loss_table(), \
        "README.md's loss table is stale: run python tools/loss_table.py"
    for name in LOSSES:
        spec = REGISTRY[name]
        assert spec.doc_shapes and spec.doc_loss, f"{name} declares no README row"
        assert f"| `{_registry.call_text(spec)}` |" in table


# --- torch parity, for every loss torch has ---------------------------------------------------

@pytest.mark.parametrize("name", WITH_TORCH)
def test_every_loss_torch_has_has_a_parity_case(name):
    assert any(case.torch is not None for case in cases.ALL_CASES if case.name == name), \
        f"tests/cases.py gives no torch call for {name} (torch.nn.functional.{REGISTRY[name].torch})"


TORCH_PARITY = [(case, option, reduction, dtype)
                for case in cases.ALL_CASES if case.torch is not None
                for option in case.options
                if case.torch_options is None or option in case.torch_options
                for reduction in ("mean", "sum", "none")
                for dtype in (np.float32, np.float64)]


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize(
    "case,option,reduction,dtype", TORCH_PARITY,
    ids=[f"{c!r}[{o}]-{r}-{np.dtype(d).name}" for c, o, r, d in TORCH_PARITY])
def test_matches_torch(module, case, option, reduction, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for shape in [(37,), (23, 4)] if 1 in case.ndims else [(23, 4)]:
        pred, target = case.make_inputs(np.random.default_rng(len(shape)), shape, dtype)
        options = case.options[option](shape)
        x = torch.from_numpy(pred.copy()).requires_grad_(True)
        loss = case.torch(F, x, torch.from_numpy(target), options, reduction)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        ours = getattr(module, case.name)(pred, target, reduction=reduction, **options)
        if reduction != "none":
            assert type(ours.loss) is float
        assert_close(ours.loss, loss.detach().numpy(), dtype, scale=10.0)
        assert_close(cases.pred_grad(ours.grad), grad.numpy(), dtype, scale=case.grad_scale)


# --- import fastloss stays lean ----------------------------------------------------------------

def test_import_fastloss_loads_no_reference_or_demo_code():
    code = "import sys, fastloss\nprint('\\n'.join(sorted(sys.modules)))\n"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout.split()
    assert "fastloss._registry" in loaded
    for module in ("fastloss.reference", "fastloss.torch", "fastloss.showcase",
                   "torch", "matplotlib", "scipy", "sklearn"):
        assert module not in loaded, f"import fastloss loads {module}"


# --- a loss with three inputs and two gradients ------------------------------------------


def _scaled_nll(mean, target, var, eps, hess):
    """0.5 (log v + r^2 / v), v = max(var, eps): a Gaussian negative log-likelihood."""
    v = np.maximum(var, eps)
    r = mean - target
    loss = 0.5 * (np.log(v) + r * r / v)
    grads = (r / v, 0.5 * (1 / v - r * r / (v * v)))
    return loss, grads, (1 / v if hess else None)


NLL = Loss("scaled_nll", "elementwise", inputs=("mean", "target", "var"),
           gradients=("mean", "var"), hess=True, formula=_scaled_nll, kernel="scaled_nll",
           params=(_checks.Real("eps", 1e-6, low=0.0, low_open=True),))


def scaled_nll(mean, target, var, *, eps=1e-6, sample_weight=None, reduction="mean",
               grad=True, hess=False, out=None, out_var=None, n_threads=None):
    """A Gaussian negative log-likelihood, declared like gaussian_nll will be."""


def test_a_loss_with_three_inputs_and_two_gradients_can_be_declared():
    assert NLL.gradients == ("mean", "var") and NLL.extra_outs == ("out_var",)
    _registry.check_signature(NLL, scaled_nll)      # out_var follows out
    twin = _registry.derived_twin(NLL, reference._elementwise, "tests", scaled_nll)
    assert inspect.signature(twin) == inspect.signature(scaled_nll)
    rng = np.random.default_rng(0)
    mean, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    var = rng.uniform(0.5, 2.0, size=(5, 3))
    weight = rng.uniform(0.5, 2.0, 5)
    out_var = np.empty_like(var)
    loss, (grad_mean, grad_var) = twin(mean, target, var, sample_weight=weight,
                                       out_var=out_var)
    assert grad_var is out_var

    def total(m, v):
        return twin(m, target, v, sample_weight=weight, grad=False).loss

    np.testing.assert_allclose(grad_mean, finite_difference_gradient(
        lambda m: total(m, var), mean), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(grad_var, finite_difference_gradient(
        lambda v: total(mean, v), var), rtol=1e-8, atol=1e-10)
    assert loss == pytest.approx(total(mean, var))
    with pytest.raises(ValueError, match="var"):
        twin(mean, target, var[:, :2])
    with pytest.raises(ValueError, match="eps"):
        twin(mean, target, var, eps=0.0)


def _stand_in_kernel(mean, target, var, weight, loss_out, grad_mean_out, grad_var_out,
                     hess_out, grad_scale, n_threads, eps):
    """A NumPy stand-in for the compiled kernel of a three-input, two-gradient loss, with
    the argument list fastloss._elementwise._call_kernel gives such a kernel."""
    loss, (grad_mean, grad_var), hess = _scaled_nll(mean, target, var, eps, True)
    w = np.ones((mean.shape[0], 1)) if weight.size == 0 else weight[:, None]
    for out, values in ((loss_out, w * loss), (grad_mean_out, grad_scale * w * grad_mean),
                        (grad_var_out, grad_scale * w * grad_var),
                        (hess_out, grad_scale * w * hess)):
        if out.size:
            out[...] = values
    return float(np.sum(w * loss))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_fast_face_runs_a_loss_with_three_inputs_and_two_gradients(reduction,
                                                                      monkeypatch):
    """The elementwise call path hands a kernel every input and one output per gradient
    (a stand-in kernel here), and returns the gradients as a tuple, as the twin does."""
    from fastloss import _elementwise
    monkeypatch.setitem(_elementwise._KERNELS, "scaled_nll",
                        {np.dtype(np.float64): _stand_in_kernel})
    fast = _registry.derived_twin(NLL, _elementwise.run_several, "tests", scaled_nll)
    twin = _registry.derived_twin(NLL, reference._elementwise, "tests", scaled_nll)
    rng = np.random.default_rng(1)
    mean, target = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    var = rng.uniform(0.5, 2.0, size=(6, 2))
    weight = rng.uniform(0.5, 2.0, 6)
    for kwargs in ({}, {"sample_weight": weight}, {"hess": True},
                   {"out": np.empty_like(mean), "out_var": np.empty_like(var)}):
        ours = fast(mean, target, var, reduction=reduction, **kwargs)
        theirs = twin(mean, target, var, reduction=reduction, **kwargs)
        assert type(ours) is type(theirs) and isinstance(ours.grad, tuple)
        assert_close(ours.loss, theirs.loss, np.float64)
        for g, expected in zip(ours.grad, theirs.grad):
            assert_close(g, expected, np.float64)
        if "out" in kwargs:
            assert ours.grad[0] is kwargs["out"] and ours.grad[1] is kwargs["out_var"]
        if "hess" in kwargs:
            assert_close(ours.hess, theirs.hess, np.float64)
    assert fast(mean, target, var, reduction=reduction, grad=False).grad is None
    empty = fast(mean[:0], target[:0], var[:0], reduction=reduction)
    assert [g.shape for g in empty.grad] == [(0, 2), (0, 2)]
    with pytest.raises(ValueError, match="out_var"):
        fast(mean, target, var, out_var=np.empty((6, 3)))
