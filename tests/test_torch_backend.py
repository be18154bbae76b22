"""fastloss.torch against torch.nn.functional: values, gradients, fallbacks.

Every fast-path case also asserts that the fused Function really ran (its
grad_fn), so that a silent fallback to torch cannot make a parity test pass.
"""
import inspect
import itertools
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastloss.torch as flt  # noqa: E402
from torch_helpers import (DTYPES, REDUCTIONS, compare, fused, generator, labels,  # noqa: E402
                           rand, randn)

FUNCTIONS = ["cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "huber_loss",
             "multi_margin_loss"]
MODULES = {"CrossEntropyLoss": "cross_entropy", "BCEWithLogitsLoss":
           "binary_cross_entropy_with_logits", "MSELoss": "mse_loss",
           "HuberLoss": "huber_loss", "MultiMarginLoss": "multi_margin_loss"}


@pytest.fixture(autouse=True)
def fused_at_every_size(monkeypatch):
    """The fused path for the small tensors of these tests too: by default eager
    multi_margin_loss leaves calls on fewer than _MULTI_MARGIN_TORCH_BELOW
    elements to torch (test_small_multi_margin_calls_are_torchs)."""
    monkeypatch.setattr(flt, "_MULTI_MARGIN_TORCH_BELOW", 1)


def test_small_multi_margin_calls_are_torchs(monkeypatch):
    monkeypatch.undo()
    assert flt._MULTI_MARGIN_TORCH_BELOW == 1 << 13
    for shape, fused_path in (((32, 10), False), ((64, 127), False), ((64, 128), True),
                              ((256, 100), True)):
        x = randn(*shape).requires_grad_(True)
        y = labels(shape[0], shape[1], seed=1)
        assert fused(flt.multi_margin_loss(x, y)) == fused_path
        compare(lambda x, y: flt.multi_margin_loss(x, y, p=2, margin=0.5),
                lambda x, y: F.multi_margin_loss(x, y, p=2, margin=0.5), [x, y],
                torch.float32, expect_fused=fused_path)


# --- API ----------------------------------------------------------------------

def test_import_fastloss_does_not_import_torch():
    code = ("import sys, fastloss, fastloss.reference; "
            "sys.exit('torch imported' if 'torch' in sys.modules else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_signature_is_torchs(name):
    # torch's parameters, in torch's order with torch's defaults, then fastloss's
    # keyword-only extras (whose defaults are torch's semantics)
    parameters = inspect.signature(getattr(flt, name)).parameters
    extras = {key: p.default for key, p in parameters.items() if key in EXTRAS.get(name, {})}
    assert extras == EXTRAS.get(name, {})
    assert all(parameters[key].kind is inspect.Parameter.KEYWORD_ONLY for key in extras)
    ours = [(key, p.default) for key, p in parameters.items() if key not in extras]
    theirs = [(key, p.default) for key, p in
              inspect.signature(getattr(F, name)).parameters.items()]
    assert ours == theirs


EXTRAS = {"cross_entropy": {"z_loss": 0.0, "softcap": None}}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_torchs_with_the_fused_forward(name):
    module_class = getattr(flt, name)
    assert issubclass(module_class, getattr(torch.nn, name))
    assert inspect.signature(module_class) == inspect.signature(getattr(torch.nn, name))
    x = randn(8, 5).requires_grad_(True)
    if name in ("CrossEntropyLoss", "MultiMarginLoss"):
        target = labels(8, 5)
        module = module_class(weight=rand(5) + 0.5, reduction="sum")
    elif name == "BCEWithLogitsLoss":
        target = rand(8, 5)
        module = module_class(pos_weight=rand(5) + 0.5)
    else:
        target = randn(8, 5, seed=1)
        module = module_class(reduction="sum")
    reference = getattr(torch.nn, name)(**{k: getattr(module, k) for k in
                                          ("weight", "pos_weight", "reduction")
                                          if hasattr(module, k)})
    assert module.state_dict().keys() == reference.state_dict().keys()
    compare(module, reference, [x, target], torch.float64)


# --- values and gradients over the option grid ---------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_labels(dtype, reduction, weighted, ignore_index, label_smoothing):
    n_rows, n_classes = 64, 7
    x = randn(n_rows, n_classes, dtype=dtype, scale=3.0)
    y = labels(n_rows, n_classes, seed=1)
    y[::5] = ignore_index
    weight = rand(n_classes, dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, y: f(x, y, weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=label_smoothing)
    compare(run(flt.cross_entropy), run(F.cross_entropy), [x, y], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_probabilities(dtype, reduction, weighted, label_smoothing):
    n_rows, n_classes = 48, 6
    x = randn(n_rows, n_classes, dtype=dtype, scale=2.0)
    t = torch.softmax(randn(n_rows, n_classes, seed=1), dim=1).to(dtype)
    weight = rand(n_classes, dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, t: f(x, t, weight, reduction=reduction,
                              label_smoothing=label_smoothing)
    compare(run(flt.cross_entropy), run(F.cross_entropy), [x, t], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("probabilities", [False, True])
def test_cross_entropy_unbatched(reduction, probabilities):
    x = randn(9)
    target = torch.softmax(randn(9, seed=1), 0) if probabilities else torch.tensor(4)
    compare(lambda x, t: flt.cross_entropy(x, t, reduction=reduction),
            lambda x, t: F.cross_entropy(x, t, reduction=reduction), [x, target],
            torch.float64)


def test_cross_entropy_extreme_logits_float32():
    x = randn(16, 10, dtype=torch.float32, scale=1e4)
    x[0, 0] = 3e38
    x[1, :] = -3e38
    y = labels(16, 10, seed=3)
    compare(flt.cross_entropy, F.cross_entropy, [x, y], torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin(dtype, reduction, p, margin, weighted):
    n_rows, n_classes = 40, 5
    x = randn(n_rows, n_classes, dtype=dtype)
    y = labels(n_rows, n_classes, seed=1)
    weight = rand(n_classes, dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, y: f(x, y, p=p, margin=margin, weight=weight, reduction=reduction)
    compare(run(flt.multi_margin_loss), run(F.multi_margin_loss), [x, y], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multi_margin_unbatched(reduction):
    compare(lambda x, y: flt.multi_margin_loss(x, y, reduction=reduction),
            lambda x, y: F.multi_margin_loss(x, y, reduction=reduction),
            [randn(6), torch.tensor(2)], torch.float64)


BCE_CASES = [
    # (input shape, weight shape or None, pos_weight shape or None)
    ((30,), None, None),
    ((30,), (30,), ()),
    ((30, 4), None, None),
    ((30, 4), None, (4,)),
    ((30, 4), None, (1,)),
    ((30, 4), (30, 4), None),
    ((30, 4), (4,), None),
    ((30, 4), (30, 1), (4,)),
    ((30, 4), (), (4,)),
    ((5, 6, 4), (5, 6, 1), (4,)),
    ((5, 6, 4), (6, 4), ()),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, weight_shape, pos_weight_shape", BCE_CASES)
def test_binary_cross_entropy_with_logits(dtype, reduction, shape, weight_shape,
                                          pos_weight_shape):
    x = randn(*shape, dtype=dtype, scale=4.0)
    t = rand(*shape, dtype=dtype, seed=1)
    t[..., ::3] = t[..., ::3].round()          # hard and soft labels
    weight = None if weight_shape is None else rand(*weight_shape, dtype=dtype, seed=2) + 0.1
    pos_weight = None if pos_weight_shape is None else \
        rand(*pos_weight_shape, dtype=dtype, seed=3) * 3

    def run(f):
        return lambda x, t: f(x, t, weight, reduction=reduction, pos_weight=pos_weight)
    compare(run(flt.binary_cross_entropy_with_logits),
            run(F.binary_cross_entropy_with_logits), [x, t], dtype)


ELEMENTWISE_SHAPES = [(), (50,), (20, 3), (4, 5, 6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_mse_loss(dtype, reduction, shape, weighted):
    x, t = randn(*shape, dtype=dtype), randn(*shape, dtype=dtype, seed=1)
    weight = rand(*shape, dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, t: f(x, t, reduction=reduction, weight=weight)
    compare(run(flt.mse_loss), run(F.mse_loss), [x, t], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("delta", [1.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_huber_loss(dtype, reduction, shape, delta, weighted):
    x, t = randn(*shape, dtype=dtype, scale=2.0), randn(*shape, dtype=dtype, seed=1)
    weight = rand(*shape, dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, t: f(x, t, reduction=reduction, delta=delta, weight=weight)
    compare(run(flt.huber_loss), run(F.huber_loss), [x, t], dtype)


def test_deprecated_size_average_and_reduce():
    x, y = randn(10, 4), labels(10, 4)
    for size_average, reduce in itertools.product([None, True, False], [None, True, False]):
        if size_average is None and reduce is None:
            continue
        with pytest.warns(UserWarning):
            fast = flt.cross_entropy(x, y, size_average=size_average, reduce=reduce)
        with pytest.warns(UserWarning):
            ref = F.cross_entropy(x, y, size_average=size_average, reduce=reduce)
        torch.testing.assert_close(fast, ref)


# --- autograd behaviour ---------------------------------------------------------

GRADCHECK_CASES = {
    "cross_entropy": lambda x: flt.cross_entropy(x, torch.tensor([0, 2, -100, 1]),
                                                 rand(3, seed=5) + 0.5, label_smoothing=0.1),
    "cross_entropy_none": lambda x: flt.cross_entropy(x, torch.tensor([0, 2, 1, 1]),
                                                      reduction="none"),
    "multi_margin_loss": lambda x: flt.multi_margin_loss(x, torch.tensor([0, 2, 1, 1]), p=2,
                                                         margin=0.7),
    "binary_cross_entropy_with_logits": lambda x: flt.binary_cross_entropy_with_logits(
        x, rand(4, 3, seed=6), pos_weight=rand(3, seed=7) + 0.5, reduction="none"),
    "mse_loss": lambda x: flt.mse_loss(x, randn(4, 3, seed=8), reduction="sum"),
    "huber_loss": lambda x: flt.huber_loss(x, randn(4, 3, seed=9), delta=0.5),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_gradcheck(name):
    # Inputs away from the kinks of hinge and Huber, where finite differences fail.
    x = (randn(4, 3, seed=10) * 2).requires_grad_(True)
    assert fused(GRADCHECK_CASES[name](x))
    assert torch.autograd.gradcheck(GRADCHECK_CASES[name], (x,))


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits",
                                  "mse_loss"])
def test_double_backward_falls_back_to_torch(name):
    x = randn(4, 3, seed=11).requires_grad_(True)
    assert torch.autograd.gradgradcheck(GRADCHECK_CASES[name], (x,))


def test_hessian_vector_product_equals_torchs():
    x = randn(6, 5, seed=12).requires_grad_(True)
    y = labels(6, 5, seed=13)
    v = randn(6, 5, seed=14)
    results = []
    for f in (flt.cross_entropy, F.cross_entropy):
        (g,) = torch.autograd.grad(f(x, y, label_smoothing=0.05), x, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), x)
        results.append((g, hv))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_backward_twice_with_retain_graph_accumulates():
    x = randn(8, 4).requires_grad_(True)
    y = labels(8, 4)
    loss = flt.cross_entropy(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    x.grad = None
    F.cross_entropy(x, y).backward()
    torch.testing.assert_close(first, x.grad)


def test_gradient_scaled_by_grad_output_and_through_a_graph():
    x = randn(8, 4).requires_grad_(True)
    t = randn(8, 4, seed=1)
    grads = []
    for f in (flt.huber_loss, F.huber_loss):
        x.grad = None
        (3.0 * f(torch.tanh(x), t) + f(x, t, reduction="sum")).backward()
        grads.append(x.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_no_gradient_work_without_grad():
    x = randn(8, 4).requires_grad_(True)
    y = labels(8, 4)
    with torch.no_grad():
        loss = flt.cross_entropy(x, y)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, F.cross_entropy(x, y).detach())
    plain = flt.cross_entropy(x.detach(), y)
    assert plain.grad_fn is None and not plain.requires_grad


def test_non_contiguous_input():
    base = randn(5, 8)
    x = base.t()                                # (8, 5), column-major
    assert not x.is_contiguous()
    compare(flt.cross_entropy, F.cross_entropy, [x, labels(8, 5)], torch.float64)
    compare(flt.mse_loss, F.mse_loss, [x, randn(8, 5, seed=1)], torch.float64)


def test_threads_follow_torch():
    x, y = randn(4096, 64, dtype=torch.float32), labels(4096, 64)
    previous = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            x_n = x.clone().requires_grad_(True)
            flt.cross_entropy(x_n, y).backward()
            results.append(x_n.grad)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0], results[1])  # fastloss sums in a fixed order


def test_tiny_model_trains_to_the_same_parameters():
    def train(loss_fn):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 4)).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        data = randn(64, 10, seed=1)
        target = labels(64, 4, seed=2)
        for _ in range(20):
            optimizer.zero_grad()
            loss_fn(model(data), target).backward()
            optimizer.step()
        return [p.detach() for p in model.parameters()]

    fast = train(lambda out, y: flt.cross_entropy(out, y, label_smoothing=0.1))
    ref = train(lambda out, y: F.cross_entropy(out, y, label_smoothing=0.1))
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


# --- fallbacks to torch ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_falls_back(dtype):
    x, y = randn(8, 5).to(dtype), labels(8, 5)
    compare(flt.cross_entropy, F.cross_entropy, [x, y], torch.float32, expect_fused=False)


def test_non_cpu_tensors_fall_back():
    x = torch.empty(8, 5, device="meta", requires_grad=True)
    t = torch.empty(8, 5, device="meta")
    out = flt.mse_loss(x, t)
    assert out.device.type == "meta" and not fused(out)


def test_target_requiring_grad_falls_back():
    x = randn(6, 3).requires_grad_(True)
    t_fast = randn(6, 3, seed=1).requires_grad_(True)
    t_torch = t_fast.detach().clone().requires_grad_(True)
    out = flt.mse_loss(x, t_fast)
    assert not fused(out)
    out.backward()
    F.mse_loss(x.detach(), t_torch).backward()
    torch.testing.assert_close(t_fast.grad, t_torch.grad)


def test_spatial_cross_entropy_falls_back():
    x, y = randn(4, 3, 5, 5), torch.randint(0, 3, (4, 5, 5), generator=generator(1))
    compare(flt.cross_entropy, F.cross_entropy, [x, y], torch.float64, expect_fused=False)


def test_every_label_ignored_gives_torchs_nan():
    x, y = randn(4, 3), torch.full((4,), -100)
    compare(flt.cross_entropy, F.cross_entropy, [x, y], torch.float64, expect_fused=False)
    # Not all ignored: the fast path.
    y[0] = 1
    compare(flt.cross_entropy, F.cross_entropy, [x, y], torch.float64)


def test_empty_batch_gives_torchs_nan():
    x, t = randn(0, 3), randn(0, 3)
    assert torch.isnan(flt.mse_loss(x, t)) and torch.isnan(F.mse_loss(x, t))


def test_broadcast_target_falls_back():
    x, t = randn(6, 3), randn(1, 3)
    with pytest.warns(UserWarning):
        fast = flt.mse_loss(x, t)
    with pytest.warns(UserWarning):
        torch.testing.assert_close(fast, F.mse_loss(x, t))


def test_mixed_dtypes_fall_back_with_torchs_promotion():
    x, t = randn(6, 3, dtype=torch.float32), randn(6, 3, dtype=torch.float32, seed=1)
    weight = rand(6, 3, seed=2)                 # float64 weight promotes the result
    out = flt.mse_loss(x.requires_grad_(True), t, weight=weight)
    assert out.dtype == F.mse_loss(x, t, weight=weight).dtype and not fused(out)


@pytest.mark.parametrize("call", [
    lambda f: f.cross_entropy(randn(4, 3), torch.tensor([0, 1, 3, 0])),
    lambda f: f.cross_entropy(randn(4, 3), torch.tensor([0, 1, -5, 0])),
    lambda f: f.multi_margin_loss(randn(4, 3), torch.tensor([0, 1, 7, 0])),
    lambda f: f.cross_entropy(randn(4, 3), torch.tensor([0, 1, 2, 0]), reduction="avg"),
    lambda f: f.binary_cross_entropy_with_logits(randn(4, 3), rand(4, 2)),
    lambda f: f.multi_margin_loss(randn(4, 3), torch.tensor([0, 1, 2, 0]), p=3),
], ids=["label>=C", "negative label", "margin label>=C", "bad reduction", "bad shape", "p=3"])
def test_bad_input_raises_torchs_error(call):
    with pytest.raises(Exception) as expected:
        call(F)
    with pytest.raises(expected.type):
        call(flt)


def test_the_fused_gradient_is_computed_by_fastloss():
    # The gradient tensor handed back shares memory with the kernel's output:
    # backward did no work of its own for a plain loss.backward().
    x = randn(16, 8, dtype=torch.float32).requires_grad_(True)
    loss = flt.cross_entropy(x, labels(16, 8))
    (saved,) = loss.grad_fn.saved_tensors
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.data_ptr() == saved.data_ptr()
    np.testing.assert_allclose(grad.numpy(), (torch.softmax(x.detach(), 1) - F.one_hot(
        labels(16, 8), 8)).numpy() / 16, rtol=1e-5, atol=1e-7)


# --- the fused path takes what torch takes: values the NumPy API refuses -------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["bce targets outside [0, 1]", "ce negative probabilities",
                                  "negative margin", "extreme inputs", "nan and inf inputs"])
def test_values_the_numpy_api_refuses_give_torchs_answer(dtype, case):
    # fastloss.torch calls the kernels without the NumPy API's validation:
    # whatever torch computes for these, the fused path computes too.
    x = randn(12, 5, dtype=dtype, scale=3.0)
    if case == "bce targets outside [0, 1]":
        t = (rand(12, 5, dtype=dtype, seed=1) * 3 - 1)
        compare(flt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
                [x, t], dtype)
    elif case == "ce negative probabilities":
        t = randn(12, 5, dtype=dtype, seed=1)
        compare(flt.cross_entropy, F.cross_entropy, [x, t], dtype)
    elif case == "negative margin":
        y = labels(12, 5, seed=1)
        for p in (1, 2):
            compare(lambda x, y: flt.multi_margin_loss(x, y, p=p, margin=-0.5),
                    lambda x, y: F.multi_margin_loss(x, y, p=p, margin=-0.5), [x, y], dtype)
    else:
        # Squares of the elementwise losses stay finite in the input's dtype
        # (fastloss sums them in float64, torch in the input's dtype); logits
        # go to the dtype's limits.
        big, huge = (1e18, 3e38) if dtype == torch.float32 else (1e150, 1e300)
        extremes = [1e4, -1e4, big, -big] if case == "extreme inputs" else \
            [float("nan"), float("inf"), -float("inf")]
        x.view(-1)[::7] = torch.tensor(extremes, dtype=dtype).repeat(3)[:9]
        t = randn(12, 5, dtype=dtype, seed=1)
        for fast, ref in ((flt.mse_loss, F.mse_loss), (flt.huber_loss, F.huber_loss)):
            for reduction in REDUCTIONS:
                compare(lambda x, t: fast(x, t, reduction=reduction),
                        lambda x, t: ref(x, t, reduction=reduction), [x, t], dtype)
        if case == "extreme inputs":
            # (NaN and infinite logits: see the deliberate difference below.)
            compare(flt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
                    [x, rand(12, 5, dtype=dtype, seed=3)], dtype)
            # Logits at the dtype's limit: two, as torch's float32 formulas and
            # sums overflow on more (fastloss's float64 ones do not).
            x[0, 3], x[1, 1] = huge, -huge
            compare(flt.cross_entropy, F.cross_entropy, [x, labels(12, 5, seed=2)], dtype)


# --- the bugs found by running torch's own test inputs -------------------------------

def test_multi_margin_unbatched_none_has_the_targets_shape():
    for target in (torch.tensor(2), torch.tensor([2])):
        out = flt.multi_margin_loss(randn(6), target, reduction="none")
        assert out.shape == F.multi_margin_loss(randn(6), target, reduction="none").shape
        compare(lambda x, y: flt.multi_margin_loss(x, y, reduction="none"),
                lambda x, y: F.multi_margin_loss(x, y, reduction="none"),
                [randn(6), target], torch.float64)


@pytest.mark.parametrize("ignore_index", [0, 2])
def test_cross_entropy_ignore_index_with_probabilities_raises_torchs_error(ignore_index):
    x, t = randn(4, 3), torch.softmax(randn(4, 3, seed=1), 1)
    with pytest.raises(RuntimeError, match="ignore_index is not supported") as theirs:
        F.cross_entropy(x, t, ignore_index=ignore_index)
    with pytest.raises(RuntimeError) as ours:
        flt.cross_entropy(x, t, ignore_index=ignore_index)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        flt.CrossEntropyLoss(ignore_index=ignore_index)(x, t)
    # A negative ignore_index means none with probabilities: the fused path.
    compare(lambda x, t: flt.cross_entropy(x, t, ignore_index=-1),
            lambda x, t: F.cross_entropy(x, t, ignore_index=-1), [x, t], torch.float64)


FORWARD_AD_CASES = {
    "cross_entropy": (lambda f, x: f.cross_entropy(x, labels(6, 4, seed=1)), (6, 4)),
    "cross_entropy_none_probabilities": (lambda f, x: f.cross_entropy(
        x, torch.softmax(randn(6, 4, seed=1), 1), reduction="none"), (6, 4)),
    "binary_cross_entropy_with_logits": (lambda f, x: f.binary_cross_entropy_with_logits(
        x, rand(6, 4, seed=1), pos_weight=rand(4, seed=2) + 0.5), (6, 4)),
    "mse_loss": (lambda f, x: f.mse_loss(x, randn(6, 4, seed=1)), (6, 4)),
    "mse_loss_none": (lambda f, x: f.mse_loss(x, randn(6, 4, seed=1), reduction="none"), (6, 4)),
    "huber_loss": (lambda f, x: f.huber_loss(x, randn(6, 4, seed=1), delta=0.5), (6, 4)),
}


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("name", sorted(FORWARD_AD_CASES))
def test_forward_mode_ad_gives_torchs_tangent(name, requires_grad):
    import torch.autograd.forward_ad as fwAD
    call, shape = FORWARD_AD_CASES[name]
    primal, tangent = randn(*shape, seed=20) * 2, randn(*shape, seed=21)
    results = []
    for f in (flt, F):
        with fwAD.dual_level():
            x = fwAD.make_dual(primal.clone().requires_grad_(requires_grad), tangent)
            out = fwAD.unpack_dual(call(f, x))
            assert out.tangent is not None
            results.append((out.primal.detach(), out.tangent))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    # The tangent is not zero: the test would catch a dropped one.
    assert results[1][1].abs().max() > 1e-3


def test_forward_mode_ad_of_multi_margin_raises_torchs_error():
    import torch.autograd.forward_ad as fwAD
    for f in (F, flt):      # torch has no forward AD formula for it
        with fwAD.dual_level(), pytest.raises(NotImplementedError, match="forward AD"):
            f.multi_margin_loss(fwAD.make_dual(randn(6, 4), randn(6, 4, seed=1)),
                                labels(6, 4, seed=2))


def test_forward_mode_ad_of_a_target_tangent():
    import torch.autograd.forward_ad as fwAD
    x, t, v = randn(5, 3), randn(5, 3, seed=1), randn(5, 3, seed=2)
    tangents = []
    for f in (flt.mse_loss, F.mse_loss):
        with fwAD.dual_level():
            tangents.append(fwAD.unpack_dual(f(x, fwAD.make_dual(t, v))).tangent)
    torch.testing.assert_close(tangents[0], tangents[1])


def test_plain_calls_stay_fused_outside_forward_ad():
    import torch.autograd.forward_ad as fwAD
    x = randn(5, 3).requires_grad_(True)
    with fwAD.dual_level():
        assert fused(flt.cross_entropy(x, labels(5, 3)))     # no tangent anywhere
    assert fused(flt.cross_entropy(x, labels(5, 3)))


@pytest.mark.parametrize("error", [ValueError, TypeError])
def test_errors_inside_the_fused_path_are_not_hidden(monkeypatch, error):
    # Only the documented cases go to torch: an error raised by fastloss
    # itself reaches the caller instead of a silent torch answer.
    def broken_kernel(*args):
        raise error("a fastloss bug")
    # the compiled call path first (it catches nothing), then the Python path's kernels
    for name in ("_compiled_call", "_compiled_cross_entropy"):
        monkeypatch.setattr(flt, name, broken_kernel)
    with pytest.raises(error, match="a fastloss bug"):
        flt.cross_entropy(randn(4, 3), labels(4, 3))
    with pytest.raises(error, match="a fastloss bug"):
        flt.mse_loss(randn(4, 3), randn(4, 3, seed=1))
    for name in ("_compiled_call", "_compiled_cross_entropy"):
        monkeypatch.setattr(flt, name, lambda *args: None)
    for dtype in DTYPES:
        monkeypatch.setitem(flt._KERNELS["softmax_cross_entropy"], dtype, broken_kernel)
        monkeypatch.setitem(flt._KERNELS["mse"], dtype, broken_kernel)
    with pytest.raises(error, match="a fastloss bug"):
        flt.cross_entropy(randn(4, 3), labels(4, 3))
    with pytest.raises(error, match="a fastloss bug"):
        flt.mse_loss(randn(4, 3), randn(4, 3, seed=1))


def test_infinite_logit_without_target_mass_is_the_one_deliberate_difference():
    # softmax([-inf, 0, 0]) = [0, 1/2, 1/2]; with target [0, 1/2, 1/2] the loss
    # is -(1/2 log 1/2 + 1/2 log 1/2) = log 2 (0 log 0 = 0), and the gradient
    # p - t is 0.  torch computes 0 * -inf = NaN.
    x = torch.tensor([[-float("inf"), 0.0, 0.0], [1.0, 2.0, 3.0]],
                     dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64)
    loss = flt.cross_entropy(x, t, reduction="none")
    assert fused(loss)
    assert loss[0].item() == pytest.approx(np.log(2.0), rel=1e-15)
    torch.testing.assert_close(loss[1], F.cross_entropy(x[1:], t[1:], reduction="none")[0])
    loss.sum().backward()
    assert torch.equal(x.grad[0], torch.zeros(3, dtype=torch.float64))
    assert torch.isnan(F.cross_entropy(x.detach(), t, reduction="none")[0])
    assert "[-inf, 0, 0]" in flt.__doc__ and "deliberate difference" in flt.__doc__


def test_float32_loss_beyond_the_dtypes_range_is_inf_without_a_warning():
    import warnings
    x = torch.full((4,), 3e38, dtype=torch.float32)
    t = torch.full((4,), -3e38, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = flt.mse_loss(x, t, reduction="sum")
    assert out.dtype == torch.float32 and out.item() == float("inf") == \
        F.mse_loss(x, t, reduction="sum").item()


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_targets_and_weights(dtype):
    # Every tensor argument as a strided view: the fused path copies what the
    # kernels cannot read in place.
    def strided(t):
        wide = torch.stack([t, torch.full_like(t, 7.0)], dim=-1) if t.is_floating_point() \
            else torch.stack([t, torch.full_like(t, 99)], dim=-1)
        view = wide[..., 0]
        assert not view.is_contiguous() and torch.equal(view, t)
        return view
    x = randn(10, 4, dtype=dtype, scale=2.0)
    y = strided(labels(10, 4, seed=1))
    class_weight = strided(rand(4, dtype=dtype, seed=2) + 0.5)
    probabilities = strided(torch.softmax(randn(10, 4, seed=3), 1).to(dtype))
    t = strided(rand(10, 4, dtype=dtype, seed=4))
    compare(lambda x, y: flt.cross_entropy(x, y, class_weight, label_smoothing=0.1),
            lambda x, y: F.cross_entropy(x, y, class_weight, label_smoothing=0.1), [x, y],
            dtype)
    compare(lambda x, t: flt.cross_entropy(x, t, class_weight),
            lambda x, t: F.cross_entropy(x, t, class_weight), [x, probabilities], dtype)
    compare(lambda x, y: flt.multi_margin_loss(x, y, weight=class_weight, reduction="none"),
            lambda x, y: F.multi_margin_loss(x, y, weight=class_weight, reduction="none"),
            [x, y], dtype)
    compare(lambda x, t: flt.binary_cross_entropy_with_logits(x, t, pos_weight=class_weight),
            lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=class_weight),
            [x, t], dtype)
    compare(lambda x, t: flt.binary_cross_entropy_with_logits(x, t, t),
            lambda x, t: F.binary_cross_entropy_with_logits(x, t, t), [x, t], dtype)
    compare(lambda x, t: flt.mse_loss(x, t, weight=t), lambda x, t: F.mse_loss(x, t, weight=t),
            [x, t], dtype)
    compare(lambda x, t: flt.huber_loss(x, t, weight=t), lambda x, t: F.huber_loss(x, t, weight=t),
            [x, t], dtype)


def _random_call(rng):
    """A random call of one loss: (name, positional args, keyword args); the
    first argument is the input.  Shapes, dtypes, options, contiguity and
    label values vary, bad ones included."""
    dtype = DTYPES[rng.integers(2)]
    name = FUNCTIONS[rng.integers(len(FUNCTIONS))]
    reduction = ["mean", "sum", "none"][rng.integers(3)]
    seed = int(rng.integers(1 << 30))

    def maybe_strided(t):
        return t.t().contiguous().t() if t.dim() == 2 and rng.random() < 0.3 else t

    if name in ("cross_entropy", "multi_margin_loss"):
        n_rows, n_classes = int(rng.integers(0, 6)), int(rng.integers(1, 6))
        unbatched = rng.random() < 0.15
        x = randn(n_classes, dtype=dtype, seed=seed) if unbatched else \
            maybe_strided(randn(n_rows, n_classes, dtype=dtype, seed=seed, scale=3.0))
        low, high = (-1, n_classes + 1) if rng.random() < 0.1 else (0, n_classes)
        y = torch.randint(low, high, () if unbatched else (n_rows,), generator=generator(seed))
        weight = rand(n_classes, dtype=dtype, seed=seed + 1) if rng.random() < 0.4 else None
        if name == "cross_entropy":
            kwargs = dict(weight=weight, reduction=reduction,
                          ignore_index=int(rng.choice([-100, 0, 1])),
                          label_smoothing=float(rng.choice([0.0, 0.3])))
            if rng.random() < 0.3:
                y = torch.softmax(randn(*x.shape, seed=seed + 2), -1).to(dtype)
                kwargs["ignore_index"] = int(rng.choice([-100, -1, 1]))
        else:
            kwargs = dict(weight=weight, reduction=reduction, p=int(rng.choice([1, 2])),
                          margin=float(rng.choice([1.0, 0.5, -0.5])))
        return name, (x, y), kwargs
    shape = [(), (7,), (5, 3), (2, 3, 4)][rng.integers(4)]
    x = maybe_strided(randn(*shape, dtype=dtype, seed=seed, scale=3.0))
    t = maybe_strided((rand if name == "binary_cross_entropy_with_logits" else randn)(
        *shape, dtype=dtype, seed=seed + 1))
    weight = rand(*shape, dtype=dtype, seed=seed + 2) if rng.random() < 0.3 else None
    kwargs = dict(reduction=reduction, weight=weight)
    if name == "binary_cross_entropy_with_logits" and shape and rng.random() < 0.4:
        kwargs["pos_weight"] = rand(shape[-1], dtype=dtype, seed=seed + 3) + 0.5
    if name == "huber_loss":
        kwargs["delta"] = float(rng.choice([1.0, 0.3]))
    return name, (x, t), kwargs


@pytest.mark.parametrize("seed", range(8))
def test_random_calls_give_torchs_values_gradients_and_errors(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        name, (x, target), kwargs = _random_call(rng)
        if name == "multi_margin_loss" and x.numel() == 0:
            continue        # torch returns uninitialised memory there (its bug)
        ours, theirs = getattr(flt, name), getattr(F, name)
        try:
            expected = theirs(x, target, **kwargs)
        except Exception as error:
            with pytest.raises(type(error)):
                ours(x, target, **kwargs)
            continue
        dtype = x.dtype
        compare(lambda x, t: ours(x, t, **kwargs), lambda x, t: theirs(x, t, **kwargs),
                [x, target], dtype, expect_fused=fused(ours(x.detach().requires_grad_(True),
                                                            target, **kwargs)))
        assert expected.shape == ours(x, target, **kwargs).shape


@pytest.mark.parametrize("transform", ["grad", "vmap", "jacrev", "jvp"])
def test_functorch_transforms_give_torchs_results(transform):
    # Under torch.func the call is torch's own (the fused Function is applied
    # without the wrapper that would handle the transforms).
    func = torch.func
    x, y, t = randn(6, 4, seed=30), labels(6, 4, seed=31), randn(6, 4, seed=32)
    results = []
    for f in (flt, F):
        def loss(x):
            return f.cross_entropy(x, y, label_smoothing=0.1) + f.mse_loss(x, t)
        if transform == "grad":
            results.append(func.grad(loss)(x))
        elif transform == "vmap":
            results.append(func.vmap(lambda row, target: f.mse_loss(row, target))(x, t))
        elif transform == "jacrev":
            results.append(func.jacrev(lambda x: f.cross_entropy(x, y, reduction="none"))(x))
        else:
            results.append(func.jvp(loss, (x,), (t,))[1])
    torch.testing.assert_close(results[0], results[1])
    assert results[1].abs().max() > 1e-3


def test_inference_mode():
    x, y = randn(6, 4), labels(6, 4)
    with torch.inference_mode():
        for fast, ref, target in ((flt.cross_entropy, F.cross_entropy, y),
                                  (flt.mse_loss, F.mse_loss, randn(6, 4, seed=1))):
            ours = fast(x, target, reduction="none")
            torch.testing.assert_close(ours, ref(x, target, reduction="none"))
            assert ours.grad_fn is None


def test_a_parameter_as_input_is_fused():
    weight = torch.nn.Parameter(randn(5, 3))
    compare(flt.mse_loss, F.mse_loss, [weight, randn(5, 3, seed=1)], torch.float64)
    assert fused(flt.mse_loss(weight, randn(5, 3, seed=1)))
