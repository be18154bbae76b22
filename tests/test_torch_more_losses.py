"""fastloss.torch's l1_loss, smooth_l1_loss, gaussian_nll_loss, poisson_nll_loss and
sigmoid_focal_loss against torch (and torchvision's formula written in torch).

Values and gradients over every option, reduction and shape, float32 and
float64; gradcheck in float64; the cases that go to torch's own function
(and give its answer, errors and warnings included); the module classes;
and torch.compile(fullgraph=True) through the custom operators.  Every case
that should take the fused path asserts that it did (its grad_fn), so that a
silent fallback to torch cannot make a parity test pass.
"""
import inspect
import math
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastloss.torch as flt  # noqa: E402
from torch_helpers import (DTYPES, REDUCTIONS, TOL, compare, fused, generator,  # noqa: E402
                           rand, randn)


def counts(*shape, dtype=torch.float64, seed=0):
    """Poisson counts, 0 to about 12 (some above 1, for the Stirling term)."""
    return torch.poisson(rand(*shape, seed=seed) * 8, generator=generator(seed + 100)).to(dtype)


def torchvision_focal(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss as published (torchvision is not installed),
    with the checks of its current releases (alpha, reduction)."""
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"Invalid alpha value: {alpha}. alpha must be in the range [0,1] "
                         f"or -1 for ignore.")
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    elif reduction != "none":
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported "
                         f"reduction modes: 'none', 'mean', 'sum'")
    return loss


@pytest.fixture(autouse=True)
def fused_at_every_size(monkeypatch):
    """The fused path for the small tensors of these tests too: by default
    smooth_l1_loss leaves calls on fewer than _TORCH_BELOW_ELEMENTS elements to
    torch (test_small_smooth_l1_calls_are_torchs)."""
    monkeypatch.setattr(flt, "_TORCH_BELOW_ELEMENTS", 1)


def test_small_smooth_l1_calls_are_torchs(monkeypatch):
    monkeypatch.undo()
    assert flt._TORCH_BELOW_ELEMENTS == 1 << 16
    for shape, fused_path in (((256,), False), ((255, 257), False), ((256, 256), True),
                              ((70_000,), True)):
        x, t = randn(*shape, dtype=torch.float32), randn(*shape, dtype=torch.float32, seed=1)
        compare(lambda x, t: flt.smooth_l1_loss(x, t, beta=0.5),
                lambda x, t: F.smooth_l1_loss(x, t, beta=0.5), [x, t], torch.float32,
                expect_fused=fused_path)


# --- API ----------------------------------------------------------------------

FUNCTIONS = ["l1_loss", "smooth_l1_loss", "gaussian_nll_loss", "poisson_nll_loss"]
MODULES = ["L1Loss", "SmoothL1Loss", "GaussianNLLLoss", "PoissonNLLLoss"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_signature_is_torchs(name):
    ours, theirs = (inspect.signature(getattr(m, name)).parameters for m in (flt, F))
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()]
    assert name in flt.__all__


def test_focal_signature_is_torchvisions():
    ours = inspect.signature(flt.sigmoid_focal_loss).parameters
    theirs = inspect.signature(torchvision_focal).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert "sigmoid_focal_loss" in flt.__all__


def module_case(name):
    x = randn(8, 5)
    if name == "L1Loss":
        return dict(reduction="sum"), [x, randn(8, 5, seed=1)]
    if name == "SmoothL1Loss":
        return dict(reduction="none", beta=0.7), [x, randn(8, 5, seed=1)]
    if name == "GaussianNLLLoss":
        return dict(full=True, eps=1e-3, reduction="sum"), [x, randn(8, 5, seed=1),
                                                            rand(8, 1, seed=2) + 0.1]
    return dict(log_input=False, full=True, eps=1e-6), [rand(8, 5) + 0.1, counts(8, 5)]


@pytest.mark.parametrize("name", MODULES)
def test_modules_are_torchs_with_the_fused_forward(name):
    module_class = getattr(flt, name)
    assert issubclass(module_class, getattr(torch.nn, name)) and name in flt.__all__
    assert inspect.signature(module_class) == inspect.signature(getattr(torch.nn, name))
    options, inputs = module_case(name)
    module, reference = module_class(**options), getattr(torch.nn, name)(**options)
    assert module.state_dict().keys() == reference.state_dict().keys()
    differentiated = (0, 2) if name == "GaussianNLLLoss" else (0,)
    compare(module, reference, inputs, torch.float64, differentiated=differentiated)
    copy = pickle.loads(pickle.dumps(module))
    assert type(copy) is module_class and vars(copy) == vars(module)
    compare(copy, reference, inputs, torch.float64, differentiated=differentiated)


# --- l1_loss and smooth_l1_loss ----------------------------------------------------

SHAPES = [(37,), (6, 7), (2, 3, 5), ()]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_l1_loss(dtype, reduction, shape, weighted):
    x, t = randn(*shape, dtype=dtype), randn(*shape, dtype=dtype, seed=1)
    if shape:
        t.view(-1)[::5] = x.view(-1)[::5]           # r = 0: subgradient 0, as torch
    options = {"weight": rand(*shape, dtype=dtype, seed=2)} if weighted else {}
    compare(lambda x, t: flt.l1_loss(x, t, reduction=reduction, **options),
            lambda x, t: F.l1_loss(x, t, reduction=reduction, **options), [x, t], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("beta", [1.0, 0.0, 0.25, 2.5, 1])
def test_smooth_l1_loss(dtype, reduction, shape, beta):
    x, t = randn(*shape, dtype=dtype, scale=2.0), randn(*shape, dtype=dtype, seed=1)
    if shape:
        flat_x, flat_t = x.view(-1), t.view(-1)
        flat_t[::4] = flat_x[::4]                    # r = 0
        flat_t[1::7] = flat_x[1::7] - beta           # |r| = beta: the linear side
        flat_t[2::7] = flat_x[2::7] + beta
    compare(lambda x, t: flt.smooth_l1_loss(x, t, reduction=reduction, beta=beta),
            lambda x, t: F.smooth_l1_loss(x, t, reduction=reduction, beta=beta), [x, t], dtype)


@pytest.mark.parametrize("name", ["l1_loss", "smooth_l1_loss", "smooth_l1_loss_beta_0"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_family_special_values_give_torchs_answer(name, dtype):
    x = torch.tensor([0.0, math.inf, -math.inf, math.nan, 1.0, 2.0, math.inf, 0.5], dtype=dtype)
    t = torch.tensor([0.0, 0.0, 1.0, 0.0, math.nan, math.inf, math.inf, 0.5], dtype=dtype)
    # torch's l1 gradient at a NaN residual is 0 (the kernel's NaN): a NaN l1
    # loss with a gradient (smooth_l1 with beta = 0 is torch's l1_loss) is
    # recomputed by torch; smooth_l1's NaN gradient is torch's too.
    options = {"beta": 0.0} if name.endswith("beta_0") else {}
    name = name.replace("_beta_0", "")
    for reduction in REDUCTIONS:
        compare(lambda x, t: getattr(flt, name)(x, t, reduction=reduction, **options),
                lambda x, t: getattr(F, name)(x, t, reduction=reduction, **options), [x, t],
                dtype, expect_fused=name == "smooth_l1_loss" and not options)
    finite = ~(x - t).isnan()                 # infinite residuals, no NaN one: fused
    for reduction in REDUCTIONS:
        compare(lambda x, t: getattr(flt, name)(x, t, reduction=reduction, **options),
                lambda x, t: getattr(F, name)(x, t, reduction=reduction, **options),
                [x[finite], t[finite]], dtype)


def test_l1_loss_weights_summing_to_zero_give_torchs_division_by_zero():
    x, t = randn(4, 3), randn(4, 3, seed=1)
    weight = torch.zeros(4, 3, dtype=torch.float64)
    ours, theirs = flt.l1_loss(x, t, weight=weight), F.l1_loss(x, t, weight=weight)
    assert torch.isnan(ours) and torch.isnan(theirs)


# --- poisson_nll_loss ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("shape", [(41,), (5, 6), (2, 3, 4)])
def test_poisson_nll_loss(dtype, reduction, log_input, full, shape):
    t = counts(*shape, dtype=dtype, seed=1)
    x = randn(*shape, dtype=dtype) if log_input else rand(*shape, dtype=dtype) * 5 + 0.05
    x.view(-1)[::6] = 0.0           # a zero rate (log_input False: the eps term) or log-rate
    tol = TOL[dtype] if log_input else dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 \
        else TOL[dtype]
    for eps in (1e-8, 0.1):
        compare(lambda x, t: flt.poisson_nll_loss(x, t, log_input, full, eps=eps,
                                                  reduction=reduction),
                lambda x, t: F.poisson_nll_loss(x, t, log_input, full, eps=eps,
                                                reduction=reduction),
                [x, t], dtype, tol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["negative_target", "nan_target", "inf_target",
                                  "minus_inf_input", "inf_input", "exp_overflow",
                                  "negative_rate", "zero_rate_no_eps", "nan_input"])
def test_poisson_nll_loss_calls_the_kernel_would_change_are_torchs(dtype, case):
    # (the NumPy API refuses negative targets; fastloss.torch keeps torch's answer)
    log_input = case not in ("negative_rate", "zero_rate_no_eps")
    x = randn(12, dtype=dtype) if log_input else rand(12, dtype=dtype) + 0.5
    t = counts(12, dtype=dtype, seed=1)
    t[3] = 0.0
    eps = 0.0 if case == "zero_rate_no_eps" else 1e-8
    change = {"negative_target": (None, -1.5), "nan_target": (None, math.nan),
              "inf_target": (None, math.inf), "minus_inf_input": (-math.inf, None),
              "inf_input": (math.inf, None), "exp_overflow": (800.0, None),
              "negative_rate": (-0.5, None), "zero_rate_no_eps": (0.0, None),
              "nan_input": (math.nan, None)}[case]
    if change[0] is not None:
        x[3] = change[0]
    if change[1] is not None:
        t[3] = change[1]
    for reduction in REDUCTIONS:
        compare(lambda x, t: flt.poisson_nll_loss(x, t, log_input, eps=eps,
                                                  reduction=reduction),
                lambda x, t: F.poisson_nll_loss(x, t, log_input, eps=eps, reduction=reduction),
                [x, t], dtype, expect_fused=False)


def _next_up(value, dtype):
    return torch.nextafter(torch.tensor(value, dtype=dtype),
                           torch.tensor(math.inf, dtype=dtype)).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [12, 300_001])       # the compiled path; chunks on threads
@pytest.mark.parametrize("at", ["first", "last"])
def test_poisson_nll_loss_the_kernels_input_bit_sends_exactly_torchs_cases(dtype, n, at):
    # The kernel's own pass flags the inputs where torch's formula differs (the
    # pre-pass it replaces read the input's min and max): at the edge of each rule,
    # in any chunk, the call is fused on one side and torch's on the other.
    limit = 88.0 if dtype == torch.float32 else 709.0
    tiny = torch.finfo(dtype).tiny
    cases = [  # (log_input, eps, value, fused)
        (True, 1e-8, limit, True), (True, 1e-8, _next_up(limit, dtype), False),
        (True, 1e-8, -3e38, True), (True, 1e-8, -math.inf, False),
        (True, 1e-8, math.nan, False),
        (False, tiny, 0.0, True), (False, tiny / 2, 0.0, False),
        (False, 0.0, 0.0, False), (False, 1e-8, -1e-30, False),
        (False, 1e-8, math.inf, False), (False, 1e-8, 1e30, True)]
    for log_input, eps, value, fused_path in cases:
        x = randn(n, dtype=dtype) if log_input else rand(n, dtype=dtype) + 0.5
        t = counts(n, dtype=dtype, seed=1)
        position = 0 if at == "first" else n - 1
        x[position] = value
        t[position] = 0.0 if fused_path else 1.0      # (0 * inf: torch's NaN)
        compare(lambda x, t: flt.poisson_nll_loss(x, t, log_input, eps=eps,
                                                  reduction="none"),
                lambda x, t: F.poisson_nll_loss(x, t, log_input, eps=eps, reduction="none"),
                [x, t], dtype, expect_fused=fused_path,
                tol=dict(rtol=1e-4, atol=1e-5) if not log_input and dtype == torch.float32
                else None)


def test_poisson_input_bit_is_ignored_by_the_numpy_api():
    # The NumPy API computes infinite inputs as before (its 0 * inf = 0), the bit set.
    import fastloss
    from fastloss import _dispatch
    kernels = _dispatch.elementwise_kernels
    x = np.array([[1.0], [-np.inf], [800.0]])
    t = np.array([[2.0], [0.0], [1.0]])
    result = fastloss.poisson_nll(x[:2, 0], t[:2, 0], reduction="none")
    expected = [math.exp(1.0) - 2.0, 0.0]       # exp(x) - t x, with 0 (-inf) = 0
    np.testing.assert_allclose(result.loss, expected, rtol=1e-15)
    np.testing.assert_allclose(result.grad, expected, rtol=1e-15)     # exp(x) - t
    none = np.empty((0, 0))
    total, seen = kernels.poisson_nll(x, t, np.empty(0), none, none, none, 1.0, 1,
                                      True, False, 1e-8)
    assert seen == kernels.INPUT_UNCOVERED
    total, seen = kernels.poisson_nll(x[:1], t[:1], np.empty(0), none, none, none, 1.0, 1,
                                      True, False, 1e-8)
    assert seen == 0


def test_poisson_nll_loss_large_log_rates_are_fused_below_exp_overflow():
    x = torch.tensor([80.0, -80.0, 10.0], dtype=torch.float32)
    t = torch.tensor([3.0, 0.0, 1e6], dtype=torch.float32)
    compare(lambda x, t: flt.poisson_nll_loss(x, t, reduction="none"),
            lambda x, t: F.poisson_nll_loss(x, t, reduction="none"), [x, t], torch.float32)


# --- sigmoid_focal_loss ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2), (0.25, 2.0), (-1, 2), (0.0, 1.0),
                                          (1.0, 0.0), (0.6, 1.5), (-1, 0.5), (0.25, 3)])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_loss_is_torchvisions_formula(dtype, reduction, alpha, gamma, soft):
    # logits within +-8: torchvision's rounded 1 - p_t is accurate there
    x = randn(9, 7, dtype=dtype, scale=3.0).clamp(-8, 8)
    t = rand(9, 7, dtype=dtype, seed=1)
    if not soft:
        t = (t > 0.7).to(dtype)
    compare(lambda x, t: flt.sigmoid_focal_loss(x, t, alpha, gamma, reduction),
            lambda x, t: torchvision_focal(x, t, alpha, gamma, reduction), [x, t], dtype,
            tol=TOL[dtype] if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6))


def test_sigmoid_focal_loss_default_reduction_is_none():
    x, t = randn(5, 3), (rand(5, 3, seed=1) > 0.5).double()
    out = compare(flt.sigmoid_focal_loss, torchvision_focal, [x, t], torch.float64)
    assert out.shape == (5, 3)


def test_sigmoid_focal_loss_is_stable_where_torchvision_rounds():
    # x = 20, t = 1: 1 - p_t = sigma(-20) ~ 2.1e-9; torchvision's float32 1 - p rounds
    # to 0, its float64 one is accurate to about 1e-7 here
    x = torch.tensor([20.0, -20.0, 25.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0, 1.0])
    loss = flt.sigmoid_focal_loss(x, t, alpha=-1, gamma=1.0, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    x64 = x.detach().double().requires_grad_(True)
    exact = torchvision_focal(x64, t.double(), alpha=-1, gamma=1.0)
    (exact_grad,) = torch.autograd.grad(exact.sum(), x64)
    torch.testing.assert_close(loss.double(), exact, rtol=1e-4, atol=0)
    torch.testing.assert_close(grad.double(), exact_grad, rtol=1e-4, atol=0)
    assert (loss > 0).all()
    assert (torchvision_focal(x.detach(), t, alpha=-1, gamma=1.0) == 0).all()    # rounded


@pytest.mark.parametrize("case", ["target_above_one", "nan_target", "negative_gamma",
                                  "broadcast", "alpha_half_negative"])
def test_sigmoid_focal_loss_other_calls_are_torchvisions_formula(case):
    x, t = randn(6, 4), rand(6, 4, seed=1)
    alpha, gamma = 0.25, 2.0
    if case == "target_above_one":
        t[2, 1] = 1.5
    elif case == "nan_target":
        t[0, 0] = math.nan
    elif case == "negative_gamma":
        gamma = -0.5
    elif case == "broadcast":
        t = t[:1]
    for reduction in REDUCTIONS:
        if case in ("alpha_half_negative", "broadcast"):
            # torchvision's errors (a broadcast target: binary_cross_entropy_with_logits's)
            messages = []
            for f in (flt.sigmoid_focal_loss, torchvision_focal):
                with pytest.raises(ValueError) as error:
                    f(x, t, -0.5 if case == "alpha_half_negative" else alpha, gamma,
                      reduction)
                messages.append(str(error.value))
            assert messages[0] == messages[1]
            continue
        compare(lambda x, t: flt.sigmoid_focal_loss(x, t, alpha, gamma, reduction),
                lambda x, t: torchvision_focal(x, t, alpha, gamma, reduction), [x, t],
                torch.float64, expect_fused=False)


def test_sigmoid_focal_loss_bad_reduction_is_a_value_error():
    messages = []
    for f in (flt.sigmoid_focal_loss, torchvision_focal):
        with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'") as error:
            f(randn(3), rand(3), reduction="average")
        messages.append(str(error.value))
    assert messages[0] == messages[1]


# --- gaussian_nll_loss ------------------------------------------------------------------

# (input shape, var shape): torch's shapes
VAR_SHAPES = [((7, 4), (7, 4)), ((7, 4), (7, 1)), ((7, 4), (7,)), ((7, 4), (1, 4)),
              ((40,), (40,)), ((40,), ()), ((40,), (1,)), ((3, 4, 5), (3, 1, 5)),
              ((3, 4, 5), (3, 4)), ((3, 4, 5), (3, 4, 1)), ((7, 1), (7, 1)), ((128, 3), (128,))]


def gaussian_inputs(shape, var_shape, dtype, seed=0):
    x = randn(*shape, dtype=dtype, seed=seed)
    t = randn(*shape, dtype=dtype, seed=seed + 1)
    var = rand(*var_shape, dtype=dtype, seed=seed + 2) * 2 + 0.05
    if var.dim():
        var.view(-1)[::3] = 1e-9                   # below eps: clamped, gradient passed on
    return x, t, var


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shapes", VAR_SHAPES, ids=str)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("differentiated", [(0, 2), (0,), (2,)])
def test_gaussian_nll_loss(dtype, reduction, shapes, full, differentiated):
    x, t, var = gaussian_inputs(*shapes, dtype)
    for eps in (1e-6, 0.3):
        compare(lambda x, t, v: flt.gaussian_nll_loss(x, t, v, full, eps, reduction),
                lambda x, t, v: F.gaussian_nll_loss(x, t, v, full, eps, reduction),
                [x, t, var], dtype, differentiated=differentiated,
                tol=TOL[dtype] if dtype == torch.float64 else dict(rtol=5e-5, atol=1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_loss_float_var(dtype, reduction):
    x, t, _ = gaussian_inputs((6, 5), (1,), dtype)
    for var in (0.7, 1e-9, 0.0):
        compare(lambda x, t: flt.gaussian_nll_loss(x, t, var, reduction=reduction),
                lambda x, t: F.gaussian_nll_loss(x, t, var, reduction=reduction), [x, t],
                dtype, tol=TOL[dtype] if dtype == torch.float64 else dict(rtol=5e-5, atol=1e-5))


def test_gaussian_nll_loss_eps_clamp_passes_the_gradient_through():
    x = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.float64)
    var = torch.tensor([1e-9, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    loss = flt.gaussian_nll_loss(x, t, var, eps=1e-3, reduction="sum")
    assert fused(loss)
    loss.backward()
    v = torch.tensor([1e-3, 1e-3, 2.0], dtype=torch.float64)
    torch.testing.assert_close(var.grad, 0.5 * (1 / v - x ** 2 / v ** 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_nll_loss_special_values(dtype):
    x = torch.tensor([0.0, math.inf, 1.0, math.nan, 2.0, 0.0], dtype=dtype)
    t = torch.tensor([0.0, 0.0, math.inf, 0.0, 1.0, 0.0], dtype=dtype)
    var = torch.tensor([1.0, 1.0, 1.0, 1.0, math.nan, math.inf], dtype=dtype)
    for reduction in REDUCTIONS:
        compare(lambda x, t, v: flt.gaussian_nll_loss(x, t, v, reduction=reduction),
                lambda x, t, v: F.gaussian_nll_loss(x, t, v, reduction=reduction),
                [x, t, var], dtype, differentiated=(0, 2))


@pytest.mark.parametrize("call, error", [
    (lambda f: f.gaussian_nll_loss(randn(4, 3), randn(4, 3), -rand(4, 3)), ValueError),
    (lambda f: f.gaussian_nll_loss(randn(4, 3), randn(4, 3), -1.0), ValueError),
    (lambda f: f.gaussian_nll_loss(randn(4, 3), randn(4, 3), rand(4, 2)), ValueError),
    (lambda f: f.gaussian_nll_loss(randn(4, 3), randn(4, 3), rand(1, 1)), ValueError),
    (lambda f: f.gaussian_nll_loss(randn(4, 3), randn(4, 3), rand(3)), ValueError),
    (lambda f: f.gaussian_nll_loss(randn(4, 3), randn(4, 3), rand(4, 3), reduction="avg"),
     ValueError),
    (lambda f: f.smooth_l1_loss(randn(4), randn(4), beta=-1.0), RuntimeError),
    (lambda f: f.l1_loss(randn(4), randn(4), reduction="avg"), ValueError),
    (lambda f: f.l1_loss(randn(4), randn(4), weight=rand(2, 2)), ValueError),
    (lambda f: f.smooth_l1_loss(randn(4), randn(4), reduction="avg"), ValueError),
    (lambda f: f.poisson_nll_loss(randn(4), rand(4), reduction="avg"), ValueError),
])
def test_bad_arguments_raise_torchs_error(call, error):
    with pytest.raises(error) as theirs:
        call(F)
    with pytest.raises(error) as ours:
        call(flt)
    assert str(ours.value) == str(theirs.value)


# --- the deprecated size_average and reduce ---------------------------------------------

def caught(call):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = call()
    return result, [(w.category, str(w.message)) for w in seen]


@pytest.mark.parametrize("name", ["l1_loss", "smooth_l1_loss", "poisson_nll_loss"])
@pytest.mark.parametrize("legacy", [dict(size_average=False), dict(reduce=False),
                                    dict(size_average=True, reduce=True)])
@pytest.mark.parametrize("broadcast", [False, True])
def test_deprecated_size_average_and_reduce_warn_as_torch(name, legacy, broadcast):
    x = rand(5, 4) + 0.1
    t = rand(1 if broadcast else 5, 4, seed=1)
    ours, our_warnings = caught(lambda: getattr(flt, name)(x.requires_grad_(True), t,
                                                            **legacy))
    theirs, their_warnings = caught(lambda: getattr(F, name)(x, t, **legacy))
    assert our_warnings == their_warnings and our_warnings
    torch.testing.assert_close(ours, theirs)
    assert fused(ours) == (not broadcast)


# --- fallbacks to torch's own function ---------------------------------------------------

FALLBACK_CASES = {
    "broadcast_target": lambda x: (x, randn(1, 4, seed=1)),
    "other_dtype_target": lambda x: (x, randn(5, 4, seed=1, dtype=torch.float32)),
    "float16": lambda x: (x.half(), randn(5, 4, seed=1, dtype=torch.float16)),
    "target_requires_grad": lambda x: (x, randn(5, 4, seed=1).requires_grad_(True)),
    "empty": lambda x: (x[:0], randn(0, 4, seed=1)),
}
CALLS = {
    "l1_loss": (lambda f, x, t: f.l1_loss(x, t), lambda x, t: F.l1_loss(x, t)),
    "smooth_l1_loss": (lambda f, x, t: f.smooth_l1_loss(x, t, beta=0.5), None),
    "poisson_nll_loss": (lambda f, x, t: f.poisson_nll_loss(x, t.abs(), reduction="sum"), None),
    "gaussian_nll_loss": (lambda f, x, t: f.gaussian_nll_loss(x, t, torch.ones_like(x)), None),
    "sigmoid_focal_loss": (lambda f, x, t: f.sigmoid_focal_loss(x, t.abs().clamp(max=1),
                                                                reduction="mean"), None),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("case", sorted(FALLBACK_CASES))
def test_calls_the_kernels_do_not_cover_are_torchs(name, case):
    x, t = FALLBACK_CASES[case](randn(5, 4))
    loss_fn = CALLS[name][0]
    reference = (lambda x, t: torchvision_focal(x, t.abs().clamp(max=1), reduction="mean")) \
        if name == "sigmoid_focal_loss" else (lambda x, t: loss_fn(F, x, t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # torch's broadcast warning
        try:
            theirs = reference(x.detach().requires_grad_(True), t)
        except (ValueError, RuntimeError) as error:     # (focal: BCE's shape error)
            with pytest.raises(type(error), match=str(error).replace("(", ".").replace(")", ".")
                               .replace("[", ".").replace("]", ".")):
                loss_fn(flt, x.detach().requires_grad_(True), t)
            return
        ours = loss_fn(flt, x.detach().requires_grad_(True), t)
    assert not fused(ours)
    torch.testing.assert_close(ours, theirs, equal_nan=True)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_inference_does_no_gradient_work(name):
    x, t = randn(5, 4).requires_grad_(True), rand(5, 4, seed=1)
    loss_fn = CALLS[name][0]
    with torch.no_grad():
        loss = loss_fn(flt, x, t)
    assert loss.grad_fn is None
    reference = torchvision_focal(x, t, reduction="mean") if name == "sigmoid_focal_loss" \
        else loss_fn(F, x, t)
    torch.testing.assert_close(loss, reference.detach())


def test_gaussian_nll_loss_var_only_requires_grad():
    x, t, var = gaussian_inputs((6, 3), (6, 1), torch.float64)
    compare(lambda v: flt.gaussian_nll_loss(x, t, v), lambda v: F.gaussian_nll_loss(x, t, v),
            [var], torch.float64)


# --- gradcheck -----------------------------------------------------------------------

GRADCHECK_CASES = {
    "l1_loss": lambda x: flt.l1_loss(x, randn(4, 3, seed=1)),
    "l1_loss_weighted_none": lambda x: flt.l1_loss(x, randn(4, 3, seed=1), reduction="none",
                                                   weight=rand(4, 3, seed=2)),
    "smooth_l1_loss": lambda x: flt.smooth_l1_loss(x, randn(4, 3, seed=1, scale=0.3),
                                                   beta=0.5, reduction="sum"),
    "poisson_nll_loss": lambda x: flt.poisson_nll_loss(x, counts(4, 3, seed=1), full=True),
    "poisson_nll_loss_rates": lambda x: flt.poisson_nll_loss(x.abs() + 0.5, counts(4, 3, seed=1),
                                                             log_input=False,
                                                             reduction="none"),
    "sigmoid_focal_loss": lambda x: flt.sigmoid_focal_loss(x, rand(4, 3, seed=1), gamma=1.5),
    "sigmoid_focal_loss_mean": lambda x: flt.sigmoid_focal_loss(
        x, (rand(4, 3, seed=1) > 0.5).double(), alpha=-1, reduction="mean"),
    "gaussian_nll_loss": lambda x: flt.gaussian_nll_loss(x, randn(4, 3, seed=1),
                                                         rand(4, 1, seed=2) + 0.5),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_gradcheck(name):
    x = randn(4, 3, seed=10).requires_grad_(True)
    assert fused(GRADCHECK_CASES[name](x))
    assert torch.autograd.gradcheck(GRADCHECK_CASES[name], (x,))


@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_double_backward_falls_back_to_torch(name):
    x = randn(4, 3, seed=11).requires_grad_(True)
    assert torch.autograd.gradgradcheck(GRADCHECK_CASES[name], (x,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("var_shape", [(4, 3), (4, 1), (4,), (1, 3)])
def test_gaussian_nll_loss_gradcheck_input_and_var(reduction, var_shape):
    t = randn(4, 3, seed=1)

    def loss(x, v):
        return flt.gaussian_nll_loss(x, t, v, eps=1e-3, reduction=reduction)

    x = randn(4, 3, seed=10).requires_grad_(True)
    var = (rand(*var_shape, seed=2) + 0.5).requires_grad_(True)
    assert fused(loss(x, var))
    assert torch.autograd.gradcheck(loss, (x, var))
    assert torch.autograd.gradgradcheck(loss, (x, var))


# --- torch.compile ------------------------------------------------------------------

N_FEATURES = 6
COMPILE_CASES = {
    # name: (the loss of the model's (n, 5) output, the target for n rows, the operator)
    "l1_loss": (lambda f, out, t: f.l1_loss(out, t), lambda n: randn(n, 5, seed=n),
                "l1_loss"),
    "l1_loss_weighted_none": (lambda f, out, t: f.l1_loss(out, t, reduction="none",
                                                          weight=torch.ones_like(t) * 0.5),
                              lambda n: randn(n, 5, seed=n), "l1_loss"),
    "smooth_l1_loss": (lambda f, out, t: f.smooth_l1_loss(out, t, beta=0.3),
                       lambda n: randn(n, 5, seed=n), "smooth_l1_loss"),
    "poisson_nll_loss": (lambda f, out, t: f.poisson_nll_loss(out, t, full=True),
                         lambda n: counts(n, 5, seed=n), "poisson_nll_loss"),
    "poisson_nll_loss_rates_none": (
        lambda f, out, t: f.poisson_nll_loss(torch.nn.functional.softplus(out), t,
                                             log_input=False, reduction="none"),
        lambda n: counts(n, 5, seed=n), "poisson_nll_loss"),
    "sigmoid_focal_loss": (lambda f, out, t: (torchvision_focal if f is F else
                                              f.sigmoid_focal_loss)(out, t, reduction="mean"),
                           lambda n: (rand(n, 5, seed=n) > 0.6).float(), "sigmoid_focal_loss"),
    "gaussian_nll_loss": (lambda f, out, t: f.gaussian_nll_loss(
        out[:, :4], t, torch.nn.functional.softplus(out[:, 4])),
        lambda n: randn(n, 4, seed=n), "gaussian_nll_loss"),
    "gaussian_nll_loss_none_full": (lambda f, out, t: f.gaussian_nll_loss(
        out[:, :3], t, torch.exp(out[:, 3:5].mean(1, keepdim=True)), full=True,
        reduction="none"),
        lambda n: randn(n, 3, seed=n), "gaussian_nll_loss"),
    "gaussian_nll_loss_float_var": (lambda f, out, t: f.gaussian_nll_loss(out, t, 0.5),
                                    lambda n: randn(n, 5, seed=n), "gaussian_nll_loss"),
}


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 5))


def loss_and_grads(net, step, x, target):
    net.zero_grad()
    loss = step(x, target)
    loss.backward(torch.ones_like(loss))
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


@pytest.fixture()
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(COMPILE_CASES))
def test_compiled_model_has_no_graph_break_and_torchs_loss(name, fresh_dynamo):
    loss_fn, make_target, op = COMPILE_CASES[name]
    net = model()
    x = torch.randn(16, N_FEATURES, generator=generator(0))
    target = make_target(16).float()

    def fast_step(x, target):
        return loss_fn(flt, net(x), target)

    explanation = torch._dynamo.explain(fast_step)(x, target)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    assert f"fastloss.{op}" in explanation.graphs[0].code
    torch._dynamo.reset()

    compiled = torch.compile(fast_step, fullgraph=True, backend="aot_eager")
    x2 = torch.randn(9, N_FEATURES, generator=generator(2))
    target2 = make_target(9).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads = loss_and_grads(net, compiled, x, target)
        loss2, grads2 = loss_and_grads(net, compiled, x2, target2)
    ref_loss, ref_grads = loss_and_grads(net, lambda x, t: loss_fn(F, net(x), t), x, target)
    ref_loss2, ref_grads2 = loss_and_grads(net, lambda x, t: loss_fn(F, net(x), t), x2, target2)
    for got, expected in ((loss, ref_loss), (loss2, ref_loss2)):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=2e-6, atol=2e-6)
    for got, expected in zip(grads + grads2, ref_grads + ref_grads2):
        torch.testing.assert_close(got, expected, rtol=2e-6, atol=2e-6)


def test_compiled_calls_the_kernel_refuses_give_torchs_answer(fresh_dynamo):
    @torch.compile(fullgraph=True, backend="aot_eager")
    def evaluate(x, target, var):
        return (flt.poisson_nll_loss(x, target, reduction="none"),
                flt.gaussian_nll_loss(x, target, var))

    x, t = randn(6, dtype=torch.float32), counts(6, dtype=torch.float32, seed=1)
    t[2] = -1.0                             # torch computes negative targets
    x[4] = -math.inf                        # and 0 * -inf is its NaN
    t[4] = 0.0
    ours = evaluate(x, t, torch.ones(6))
    torch.testing.assert_close(ours[0], F.poisson_nll_loss(x, t, reduction="none"),
                               equal_nan=True)
    with pytest.raises(Exception, match="var has negative entry"):
        evaluate(x, t, -torch.ones(6))


OPCHECK_CASES = [
    ("l1_loss", lambda x: (x, randn(*x.shape, seed=1).to(x.dtype), None, "mean")),
    ("l1_loss", lambda x: (x, randn(*x.shape, seed=1).to(x.dtype),
                           rand(*x.shape, seed=2).to(x.dtype), "none")),
    ("smooth_l1_loss", lambda x: (x, randn(*x.shape, seed=1).to(x.dtype), "sum", 0.5)),
    ("poisson_nll_loss", lambda x: (x, counts(*x.shape, seed=1).to(x.dtype), True, True,
                                    1e-8, "none")),
    ("sigmoid_focal_loss", lambda x: (x, rand(*x.shape, seed=1).to(x.dtype), 0.25, 2.0,
                                      "mean")),
]


@pytest.mark.parametrize("need_grad, dtype", [(True, torch.float32), (False, torch.float64)])
@pytest.mark.parametrize("case", range(len(OPCHECK_CASES)))
def test_custom_operators_pass_torchs_opcheck(case, need_grad, dtype):
    name, make_args = OPCHECK_CASES[case]
    x = torch.randn(6, 5, generator=generator(5), dtype=dtype)
    args = make_args(x.requires_grad_(need_grad))
    torch.library.opcheck(getattr(torch.ops.fastloss, name), args + (need_grad,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("var_shape", [(6, 5), (6, 1), (1, 5)])
@pytest.mark.parametrize("need", [(True, True), (True, False), (False, True)])
def test_gaussian_operator_passes_torchs_opcheck(reduction, var_shape, need):
    x = torch.randn(6, 5, generator=generator(5)).requires_grad_(need[0])
    var = (torch.rand(var_shape, generator=generator(6)) + 0.1).requires_grad_(need[1])
    torch.library.opcheck(torch.ops.fastloss.gaussian_nll_loss,
                          (x, torch.randn(6, 5, generator=generator(7)), var, True, 1e-6,
                           reduction) + need)


# --- layouts and forward-mode AD ------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CALLS))
def test_non_contiguous_inputs(name):
    x, t = randn(4, 5).T, rand(4, 5, seed=1).T          # (5, 4) views, transposed
    assert not x.is_contiguous()
    loss_fn = CALLS[name][0]
    reference = (lambda x, t: torchvision_focal(x, t.abs().clamp(max=1), reduction="mean")) \
        if name == "sigmoid_focal_loss" else (lambda x, t: loss_fn(F, x, t))
    compare(lambda x, t: loss_fn(flt, x, t), reference, [x, t], torch.float64)


def test_gaussian_nll_loss_non_contiguous_var():
    x, t = randn(5, 4), randn(5, 4, seed=1)
    var = (rand(4, 5, seed=2) + 0.1).T
    compare(flt.gaussian_nll_loss, F.gaussian_nll_loss, [x, t, var], torch.float64,
            differentiated=(0, 2))


@pytest.mark.parametrize("name, dual", [(name, "input") for name in sorted(CALLS)]
                         + [("gaussian_nll_loss", "var")])
def test_forward_mode_ad_gives_torchs_tangent(name, dual):
    from torch.autograd import forward_ad
    x, t = randn(5, 4), rand(5, 4, seed=1)
    var = rand(5, 4, seed=2) + 0.1
    tangent = randn(5, 4, seed=3)

    def call(f, x, var):
        if name == "gaussian_nll_loss":
            return f.gaussian_nll_loss(x, t, var, reduction="sum")
        if name == "sigmoid_focal_loss":
            return (f.sigmoid_focal_loss if f is flt else torchvision_focal)(x, t,
                                                                            reduction="sum")
        return CALLS[name][0](f, x, t)

    results = []
    for f in (flt, F):
        with forward_ad.dual_level():
            if dual == "input":
                out = call(f, forward_ad.make_dual(x, tangent), var)
            else:
                out = call(f, x, forward_ad.make_dual(var, tangent))
            results.append(forward_ad.unpack_dual(out))
    torch.testing.assert_close(results[0].primal, results[1].primal)
    assert results[0].tangent is not None
    torch.testing.assert_close(results[0].tangent, results[1].tangent)
