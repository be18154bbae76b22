"""fastloss.torch's nll_loss, kl_div and cross_entropy over (N, C, d1, ...) against torch.

Values and gradients over every option, reduction and shape, float32 and
float64; gradcheck in float64; the cases that go to torch's own function
(and give its answer, errors included); the module classes; and
torch.compile(fullgraph=True) through the custom operators.  Every case that
should take the fused path asserts that it did (its grad_fn), so that a
silent fallback to torch cannot make a parity test pass.
"""
import concurrent.futures
import functools
import inspect
import itertools
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch.autograd import forward_ad  # noqa: E402

import fastloss.torch as flt  # noqa: E402
import torch_helpers  # noqa: E402
from torch_helpers import DTYPES, REDUCTIONS, fused, generator, labels, rand, randn  # noqa: E402

# (the gradients here must also have torch's layout)
compare = functools.partial(torch_helpers.compare, same_strides=True)

KL_REDUCTIONS = ["batchmean", "mean", "sum", "none"]


def log_probabilities(*shape, dtype=torch.float64, seed=0, dim=1):
    return torch.log_softmax(randn(*shape, seed=seed, scale=2.0), dim=dim).to(dtype)


def kl_silently(f):
    """f with kl_div's "mean" warning silenced (its own test checks it)."""
    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="reduction: 'mean'")
            return f(*args, **kwargs)
    return call


@pytest.fixture(autouse=True)
def fused_at_every_size(monkeypatch):
    """The fused path for the small tensors of these tests too: by default
    nll_loss and (N, C, d1, ...) cross_entropy leave calls on fewer than
    _TORCH_BELOW_ELEMENTS elements to torch (test_small_calls_are_torchs)."""
    monkeypatch.setattr(flt, "_TORCH_BELOW_ELEMENTS", 1)


# --- API ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nll_loss", "kl_div"])
def test_signature_is_torchs(name):
    ours, theirs = (inspect.signature(getattr(m, name)).parameters for m in (flt, F))
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert name in flt.__all__


@pytest.mark.parametrize("name", ["NLLLoss", "KLDivLoss"])
def test_modules_are_torchs_with_the_fused_forward(name):
    module_class = getattr(flt, name)
    assert issubclass(module_class, getattr(torch.nn, name)) and name in flt.__all__
    assert inspect.signature(module_class) == inspect.signature(getattr(torch.nn, name))
    x = log_probabilities(8, 5)
    if name == "NLLLoss":
        options = dict(weight=rand(5) + 0.5, ignore_index=1, reduction="sum")
        target = labels((8,), 5, seed=1)
    else:
        options = dict(reduction="batchmean", log_target=True)
        target = log_probabilities(8, 5, seed=1)
    module, reference = module_class(**options), getattr(torch.nn, name)(**options)
    assert module.state_dict().keys() == reference.state_dict().keys()
    compare(module, reference, [x, target], torch.float64)
    copy = pickle.loads(pickle.dumps(module))
    assert type(copy) is module_class
    compare(copy, reference, [x, target], torch.float64)


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
def test_small_calls_are_torchs(name, monkeypatch):
    # Below the threshold, torch's own function (its native loss costs about
    # the autograd floor there); from it on, the fused path.  (N, C)
    # cross-entropy and kl_div take the fused path at every size.
    monkeypatch.undo()
    assert flt._TORCH_BELOW_ELEMENTS == 1 << 16
    cases = [((4, 5, 8, 8), False), ((1, 16, 64, 64), True), ((100, 10), name != "nll_loss")]
    if name == "nll_loss":
        cases += [((8192, 8), True), ((10,), False)]
    for shape, fused_path in cases:
        x = log_probabilities(*shape, dtype=torch.float32, dim=0 if len(shape) == 1 else 1)
        y = labels(shape[:1] + shape[2:] if len(shape) > 1 else (), shape[len(shape) > 1],
                   seed=1)
        compare(getattr(flt, name), getattr(F, name), [x, y], torch.float32,
                expect_fused=fused_path)
    x, t = kl_inputs((4, 5), torch.float32, False)
    compare(lambda x, t: flt.kl_div(x, t, reduction="batchmean"),
            lambda x, t: F.kl_div(x, t, reduction="batchmean"), [x, t], torch.float32)


def test_own_kernels_are_the_build_dispatch_chose():
    from fastloss import _config, _dispatch
    kernels = flt._OWN_KERNELS
    assert kernels.__name__.endswith("_v3") == (_dispatch.PATH == _dispatch.X86_64_V3)
    assert set(kernels.BUILD) == {"debug", "asan", "openmp"}
    assert kernels.BUILD["openmp"] == _config.openmp_enabled()


# --- nll_loss -----------------------------------------------------------------------

# (input shape, label shape): unbatched, batched, and (N, C, d1, ...)
NLL_SHAPES = [((7,), ()), ((30, 7), (30,)), ((6, 7, 5), (6, 5)), ((3, 7, 4, 5), (3, 4, 5)),
              ((2, 7, 3, 2, 2), (2, 3, 2, 2))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("shape, label_shape", NLL_SHAPES)
def test_nll_loss(dtype, reduction, weighted, ignore_index, shape, label_shape):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    x = log_probabilities(*shape, dtype=dtype, dim=0 if len(shape) == 1 else 1)
    y = labels(label_shape, n_classes, seed=1)
    if y.dim():
        y.view(-1)[::4] = ignore_index
    weight = rand(n_classes, dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, y: f(x, y, weight, ignore_index=ignore_index, reduction=reduction)
    compare(run(flt.nll_loss), run(F.nll_loss), [x, y], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_every_label_ignored(reduction):
    # "sum" and "none": zeros by the fused path; "mean" over nothing: torch's NaN.
    x, y = log_probabilities(5, 4), torch.full((5,), -100)
    out = compare(lambda x, y: flt.nll_loss(x, y, reduction=reduction),
                  lambda x, y: F.nll_loss(x, y, reduction=reduction), [x, y], torch.float64,
                  expect_fused=reduction != "mean")
    assert torch.isnan(out) if reduction == "mean" else not out.any()


def test_nll_loss_weights_summing_to_zero_give_torchs_division_by_zero():
    x, y = log_probabilities(4, 3), torch.tensor([0, 1, 0, 1])
    weight = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    out = compare(lambda x, y: flt.nll_loss(x, y, weight),
                  lambda x, y: F.nll_loss(x, y, weight), [x, y], torch.float64,
                  expect_fused=False)
    assert not torch.isfinite(out)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, label_shape", [((0, 4), (0,)), ((0, 4, 3), (0, 3)),
                                                ((2, 4, 0), (2, 0))])
def test_nll_loss_empty_batch_gives_torchs_answer(reduction, shape, label_shape):
    x, y = log_probabilities(*shape), labels(label_shape, 4)
    out = flt.nll_loss(x, y, reduction=reduction)
    torch.testing.assert_close(out, F.nll_loss(x, y, reduction=reduction), equal_nan=True)


def test_nll_loss_deprecated_size_average_and_reduce():
    x, y = log_probabilities(10, 4), labels((10,), 4)
    for size_average, reduce in itertools.product([None, True, False], [None, True, False]):
        if size_average is None and reduce is None:
            continue
        with pytest.warns(UserWarning):
            fast = flt.nll_loss(x, y, size_average=size_average, reduce=reduce)
        with pytest.warns(UserWarning):
            ref = F.nll_loss(x, y, size_average=size_average, reduce=reduce)
        torch.testing.assert_close(fast, ref)


@pytest.mark.parametrize("call", [
    lambda f: f.nll_loss(randn(4, 3), torch.tensor([0, 1, 3, 0])),
    lambda f: f.nll_loss(randn(4, 3), torch.tensor([0, 1, -5, 0])),
    lambda f: f.nll_loss(randn(2, 3, 4), torch.tensor([[0, 1, 2, 9], [0, 0, 0, 0]])),
    lambda f: f.nll_loss(randn(4, 3), torch.tensor([0, 1, 2, 0]), reduction="avg"),
    lambda f: f.nll_loss(randn(4, 3), torch.tensor([0, 1, 2])),
    lambda f: f.nll_loss(randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.ones(4)),
    lambda f: f.nll_loss(randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0])),
], ids=["label>=C", "negative label", "spatial label>=C", "bad reduction", "batch mismatch",
        "weight shape", "float labels"])
def test_nll_loss_bad_input_raises_torchs_error(call):
    with pytest.raises(Exception) as expected:
        call(F)
    with pytest.raises(expected.type) as ours:
        call(flt)
    assert str(ours.value) == str(expected.value)


def test_nll_loss_gradient_is_the_scatter():
    x = log_probabilities(6, 4).requires_grad_(True)
    y, weight = torch.tensor([0, 3, -100, 1, 1, 2]), torch.tensor([0.5, 1.0, 2.0, 3.0],
                                                                  dtype=torch.float64)
    loss = flt.nll_loss(x, y, weight)
    (grad,) = torch.autograd.grad(loss, x)
    expected = torch.zeros(6, 4, dtype=torch.float64)
    counted = y != -100
    expected[counted.nonzero()[:, 0], y[counted]] = -weight[y[counted]] / weight[y[counted]].sum()
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-15)


# --- kl_div ---------------------------------------------------------------------

KL_SHAPES = [(), (9,), (12, 6), (3, 5, 4)]


def kl_inputs(shape, dtype, log_target, seed=0):
    x = randn(*shape, dtype=dtype, seed=seed, scale=2.0) - 2
    t = rand(*shape, dtype=dtype, seed=seed + 1)
    t.view(-1)[::5] = 0                         # 0 log 0 = 0 (a log target of -inf)
    return x, (t.log() if log_target else t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("shape", KL_SHAPES)
def test_kl_div(dtype, reduction, log_target, shape):
    x, t = kl_inputs(shape, dtype, log_target)

    def run(f):
        return kl_silently(lambda x, t: f(x, t, reduction=reduction, log_target=log_target))
    compare(run(flt.kl_div), run(F.kl_div), [x, t], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_kl_div_special_values_give_torchs_answer(dtype, reduction):
    # Negative and NaN targets, infinite inputs (0 * -inf is NaN, as in torch),
    # an infinite target: torch's values and NaNs, element by element.
    x = randn(4, 6, dtype=dtype, seed=3)
    t = rand(4, 6, dtype=dtype, seed=4)
    x[0, 0], t[0, 0] = -float("inf"), 0.0
    x[0, 1], t[0, 1] = -float("inf"), 0.5
    t[1, 0], t[1, 1], t[1, 2] = -0.5, float("nan"), float("inf")
    x[2, 0] = float("nan")
    for log_target in (False, True):
        compare(lambda x, t: flt.kl_div(x, t, reduction=reduction, log_target=log_target),
                lambda x, t: F.kl_div(x, t, reduction=reduction, log_target=log_target),
                [x, t], dtype)


def test_kl_div_mean_warns_as_torch_does():
    x, t = kl_inputs((4, 3), torch.float64, False)
    for reduction in KL_REDUCTIONS:
        for f in (F.kl_div, flt.kl_div):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                f(x, t, reduction=reduction)
            messages = [(w.category, str(w.message)) for w in caught]
            if f is F.kl_div:
                expected = messages
            else:
                assert messages == expected, reduction
        assert bool(expected) == (reduction == "mean")
    # the warning points at the caller, as torch's (stacklevel=2)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size") as w:
        flt.kl_div(x, t)
    assert w[0].filename == __file__
    # the deprecated arguments: torch's deprecation warning, not the "mean" one
    for size_average, reduce in itertools.product([None, True, False], [None, True, False]):
        if size_average is None and reduce is None:
            continue
        outs = []
        for f in (flt.kl_div, F.kl_div):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outs.append(f(x, t, size_average=size_average, reduce=reduce))
            assert [str(w.message) for w in caught if "batchmean" in str(w.message)] == []
            assert any("deprecated" in str(w.message) for w in caught)
        torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
def test_kl_div_target_requiring_grad_falls_back_with_both_gradients(log_target, reduction):
    x, t = kl_inputs((5, 4), torch.float64, log_target)
    t = t.clamp_min(-30) if log_target else t + 0.01     # away from torch's NaN at t = 0
    grads = []
    for f in (flt.kl_div, F.kl_div):
        x_f, t_f = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
        out = kl_silently(f)(x_f, t_f, reduction=reduction, log_target=log_target)
        assert not fused(out)
        out.sum().backward()
        grads.append((out.detach(), x_f.grad, t_f.grad))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
def test_kl_div_empty_and_broadcast_give_torchs_answer(reduction):
    call = kl_silently(lambda f, x, t: f.kl_div(x, t, reduction=reduction))
    x, t = randn(0, 3), rand(0, 3)
    torch.testing.assert_close(call(flt, x, t), call(F, x, t), equal_nan=True)
    x, t = randn(4, 3).requires_grad_(True), rand(1, 3)     # torch broadcasts
    ours, theirs = call(flt, x, t), call(F, x, t)
    assert not fused(ours)
    torch.testing.assert_close(ours, theirs)


def test_kl_div_bad_reduction_raises_torchs_error():
    x, t = kl_inputs((4, 3), torch.float64, False)
    with pytest.raises(ValueError) as theirs:
        F.kl_div(x, t, reduction="avg")
    with pytest.raises(ValueError) as ours:
        flt.kl_div(x, t, reduction="avg")
    assert str(ours.value) == str(theirs.value)


def test_kl_div_is_bit_identical_for_every_thread_count():
    x, t = kl_inputs((300, 1000), torch.float32, False)    # several chunks
    previous = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            x_n = x.clone().requires_grad_(True)
            loss = flt.kl_div(x_n, t, reduction="batchmean")
            loss.backward()
            results.append((loss.detach(), x_n.grad))
    finally:
        torch.set_num_threads(previous)
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])
    torch.testing.assert_close(results[0][0], F.kl_div(x, t, reduction="batchmean"),
                               rtol=1e-5, atol=0)


# --- cross_entropy over (N, C, d1, ...) ------------------------------------------------

SPATIAL_SHAPES = [(4, 5, 6), (3, 5, 4, 3), (2, 5, 3, 2, 2), (2, 21, 9, 7)]
LAYOUTS = ["contiguous", "channels_last", "strided"]


def spatial_logits(shape, dtype, layout, seed=0):
    x = randn(*shape, dtype=dtype, seed=seed, scale=3.0)
    if layout == "channels_last":
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)    # classes contiguous
        assert not x.is_contiguous() and x.movedim(1, -1).is_contiguous()
    elif layout == "strided":
        x = randn(*shape[:-1], 2 * shape[-1], dtype=dtype, seed=seed, scale=3.0)[..., ::2]
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", SPATIAL_SHAPES)
def test_spatial_cross_entropy_labels(dtype, reduction, weighted, ignore_index,
                                      label_smoothing, shape):
    x = spatial_logits(shape, dtype, "contiguous")
    y = labels(shape[:1] + shape[2:], shape[1], seed=1)
    y.view(-1)[::5] = ignore_index
    weight = rand(shape[1], dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, y: f(x, y, weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=label_smoothing)
    compare(run(flt.cross_entropy), run(F.cross_entropy), [x, y], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", SPATIAL_SHAPES[:3])
def test_spatial_cross_entropy_probabilities(dtype, reduction, weighted, label_smoothing,
                                             shape):
    x = spatial_logits(shape, dtype, "contiguous")
    t = torch.softmax(randn(*shape, seed=1), dim=1).to(dtype)
    weight = rand(shape[1], dtype=dtype, seed=2) + 0.1 if weighted else None

    def run(f):
        return lambda x, t: f(x, t, weight, reduction=reduction,
                              label_smoothing=label_smoothing)
    compare(run(flt.cross_entropy), run(F.cross_entropy), [x, t], dtype)


# float32 accuracy of the plane kernel, in ulps against the exact oracle of
# tests/oracle.py, on the row cases of tests/adversarial.py laid out as
# (n, C, S) scores (position s of sample n is row n S + s): the budgets of
# tests/test_accuracy.py (2 ulp reduced, 4 per position, 8 gradient).
SPATIAL_ULP_CASES = ["normal", "spread_1e4", "offset_1e4", "near_ties", "dominant_class",
                     "tiny_probabilities", "multi_chunk"]


@pytest.mark.parametrize("case", SPATIAL_ULP_CASES)
@pytest.mark.parametrize("weighted,label_smoothing", [(False, 0.0), (True, 0.1)])
def test_spatial_cross_entropy_float32_within_ulp_budget(case, weighted, label_smoothing):
    import adversarial
    import oracle
    cases = {c.name: c for c in adversarial.logit_cases(np.dtype(np.float32))}
    rows = cases[case].logits                                   # (R, C) float32
    n_rows, n_classes = rows.shape
    n_batch = 25 if n_rows % 25 == 0 and n_rows > 1_000 else 2  # S > BLOCK for multi_chunk
    scores = np.ascontiguousarray(
        rows.reshape(n_batch, n_rows // n_batch, n_classes).transpose(0, 2, 1))
    rng = np.random.default_rng(7)
    labels = rng.integers(0, n_classes, n_rows)
    labels[::7] = -100
    weight = rng.uniform(0.25, 2.0, n_classes).astype(np.float32) if weighted else None
    exact = oracle.softmax_cross_entropy(
        rows, labels, class_weight=None if weight is None else weight.astype(np.float64),
        ignore_index=-100, label_smoothing=label_smoothing, backend=oracle.F64)
    for reduction in REDUCTIONS:
        x = torch.from_numpy(scores.copy()).requires_grad_(True)
        loss = flt.cross_entropy(x, torch.from_numpy(labels.reshape(n_batch, -1)),
                                 None if weight is None else torch.from_numpy(weight),
                                 reduction=reduction, label_smoothing=label_smoothing)
        assert fused(loss)
        loss.backward(torch.ones_like(loss))
        grad_rows = x.grad.numpy().transpose(0, 2, 1).reshape(n_rows, n_classes)
        value = loss.detach().numpy().reshape(-1) if reduction == "none" else float(loss)
        loss_errors, grad_errors = oracle.measure(value, grad_rows, exact, reduction,
                                                  np.float32)
        limit = 4.0 if reduction == "none" else 2.0
        assert np.max(loss_errors) <= limit, (reduction, np.max(loss_errors))
        assert np.max(grad_errors) <= 8.0, (reduction, np.max(grad_errors))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("target_layout", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_spatial_cross_entropy_layouts(dtype, layout, target_layout, reduction):
    # Channels-last scores are read in place by the row kernel and their
    # gradient keeps that layout (compare checks the strides against torch's);
    # other strides are made contiguous for the plane kernel.
    shape = (3, 6, 5, 4)
    x = spatial_logits(shape, dtype, layout)
    t = torch.softmax(spatial_logits(shape, torch.float64, target_layout, seed=1), 1).to(dtype)
    y = labels(shape[:1] + shape[2:], shape[1], seed=2)
    for target in (y, t):
        compare(lambda x, t: flt.cross_entropy(x, t, reduction=reduction),
                lambda x, t: F.cross_entropy(x, t, reduction=reduction), [x, target], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_spatial_cross_entropy_extreme_and_nan_scores(dtype, layout):
    # Scores at the dtype's limits, a -inf score (at a label too: an infinite
    # loss), NaN: torch's values (NaN where torch has NaN), position by position.
    big = 3e38 if dtype == torch.float32 else 1e300
    x = randn(2, 5, 4, 3, dtype=dtype, scale=1e3)
    x[0, 1, 0, 0], x[0, :, 1, 1] = big, -big
    x[1, 2, 2, 2], x[1, 0, 2, 0], x[1, 0, 3, 0] = -float("inf"), -float("inf"), float("nan")
    if layout == "channels_last":
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    y = labels((2, 4, 3), 5, seed=1)
    y[1, 2, 2], y[1, 2, 0] = 2, 1
    for reduction in ("none", "sum"):
        compare(lambda x, y: flt.cross_entropy(x, y, reduction=reduction),
                lambda x, y: F.cross_entropy(x, y, reduction=reduction), [x, y], dtype)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_spatial_cross_entropy_infinite_scores_as_the_rows(layout, label_smoothing):
    # +inf scores, a position of -inf scores, and a -inf score that the
    # probability target gives no mass: the loss and gradient of fastloss's
    # (N, C) cross-entropy on the same rows, whatever the layout (finite
    # where torch has NaN: the module docstring's rule).
    x = randn(1, 3, 4)
    x[0, 0, 0] = float("inf")
    x[0, :2, 1] = float("inf")
    x[0, :, 2] = -float("inf")
    x[0, :, 3] = torch.tensor([-float("inf"), 0.0, 0.0])
    t = torch.tensor([[[1.0, 0.5, 0.2, 0.0], [0.0, 0.5, 0.3, 0.5], [0.0, 0.0, 0.5, 0.5]]],
                     dtype=torch.float64)
    y = torch.tensor([[0, 1, 2, 2]])
    if layout == "channels_last":
        x, t = (v.movedim(1, -1).contiguous().movedim(-1, 1) for v in (x, t))
    for target, row_target in ((y, y.reshape(4)), (t, t.movedim(1, -1).reshape(4, 3))):
        x_fast = x.clone().requires_grad_(True)
        loss = flt.cross_entropy(x_fast, target, reduction="none",
                                 label_smoothing=label_smoothing)
        assert fused(loss)
        rows = x.movedim(1, -1).reshape(4, 3).clone().requires_grad_(True)
        row_loss = flt.cross_entropy(rows, row_target, reduction="none",
                                     label_smoothing=label_smoothing)
        torch.testing.assert_close(loss.detach(), row_loss.detach().reshape(1, 4))
        loss.sum().backward()
        row_loss.sum().backward()
        torch.testing.assert_close(x_fast.grad.movedim(1, -1).reshape(4, 3), rows.grad)
        assert torch.isnan(F.cross_entropy(x, target, reduction="none")).any()
        if label_smoothing == 0 and target is t:
            # the module docstring's example: log 2, not torch's NaN
            torch.testing.assert_close(loss[0, 3].detach(),
                                       torch.tensor(np.log(2), dtype=torch.float64))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_spatial_cross_entropy_every_label_ignored(reduction):
    x, y = randn(2, 3, 4), torch.full((2, 4), 1)
    out = compare(lambda x, y: flt.cross_entropy(x, y, ignore_index=1, reduction=reduction),
                  lambda x, y: F.cross_entropy(x, y, ignore_index=1, reduction=reduction),
                  [x, y], torch.float64, expect_fused=reduction != "mean")
    assert torch.isnan(out) if reduction == "mean" else not out.any()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 3, 0), (2, 3, 0, 5)])
def test_spatial_cross_entropy_empty_gives_torchs_answer(reduction, shape):
    x, y = randn(*shape), labels(shape[:1] + shape[2:], 3)
    torch.testing.assert_close(flt.cross_entropy(x, y, reduction=reduction),
                               F.cross_entropy(x, y, reduction=reduction), equal_nan=True)


@pytest.mark.parametrize("call", [
    lambda f: f.cross_entropy(randn(2, 3, 4), torch.tensor([[0, 1, 3, 0], [0, 0, 0, 0]])),
    lambda f: f.cross_entropy(randn(2, 3, 4), torch.tensor([[0, 1, 2, 0]])),
    lambda f: f.cross_entropy(randn(2, 3, 4), torch.softmax(randn(2, 3, 4), 1), ignore_index=1),
    lambda f: f.cross_entropy(randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long),
                              torch.ones(4, dtype=torch.float64)),
], ids=["label>=C", "batch mismatch", "ignore_index with probabilities", "weight shape"])
def test_spatial_cross_entropy_bad_input_raises_torchs_error(call):
    with pytest.raises(Exception) as expected:
        call(F)
    with pytest.raises(expected.type):
        call(flt)


@pytest.mark.parametrize("bad", [-1, 3, 2 ** 31, -2 ** 63])
@pytest.mark.parametrize("weighted", [False, True])
def test_spatial_cross_entropy_labels_checked_by_the_kernel(bad, weighted):
    # The plane kernel checks the labels itself (one far outside int too):
    # torch's error and message, and the kernel writes nothing.
    x, y = randn(2, 3, 300), labels((2, 300), 3)
    y[0, ::5] = -100
    weight = rand(3) + 0.5 if weighted else None
    kernel = flt._KERNELS["spatial_cross_entropy"][torch.float64]
    class_weight = flt._NO_WEIGHT if weight is None else weight.numpy()

    def call(y, loss, grad):
        return kernel(x.numpy(), flt._NO_BLOCKS[torch.float64], y.numpy().reshape(-1),
                      class_weight, -100, 0.0, True, loss, grad, 2)

    kept = y != -100
    expected = kept.sum() if weight is None else weight[y[kept]].sum()
    first_bad, _, denominator = call(y, np.empty(600), np.empty((2, 3, 300)))
    assert first_bad == -1 and denominator == pytest.approx(float(expected), rel=1e-15)
    y[1, 257] = bad
    with pytest.raises(Exception) as raised:
        F.cross_entropy(x, y, weight)
    with pytest.raises(raised.type) as ours:
        flt.cross_entropy(x.clone().requires_grad_(True), y, weight)
    assert str(ours.value) == str(raised.value)
    loss, grad = np.full(600, 7.0), np.full((2, 3, 300), 7.0)
    assert call(y, loss, grad) == (557, 0.0, 0.0)
    assert (loss == 7.0).all() and (grad == 7.0).all()


def test_spatial_cross_entropy_calls_keep_their_own_gradients():
    # Gradients computed in the forward pass and kept until backward, of
    # calls of different sizes: none overwrites another.
    shapes = [(3, 4, 8, 8), (2, 4, 5, 5), (3, 4, 8, 8)]
    xs = [randn(*s, seed=k).requires_grad_(True) for k, s in enumerate(shapes)]
    ys = [labels(s[:1] + s[2:], 4, seed=10 + k) for k, s in enumerate(shapes)]
    losses = [flt.cross_entropy(x, y) for x, y in zip(xs, ys)]
    for loss in reversed(losses):
        loss.backward()
    for x, y in zip(xs, ys):
        x_ref = x.detach().clone().requires_grad_(True)
        F.cross_entropy(x_ref, y).backward()
        torch.testing.assert_close(x.grad, x_ref.grad)


def test_spatial_cross_entropy_from_several_threads():
    # Calls from several threads at once (the kernels share no state).
    cases = [(randn(4, 5, 16, 16, seed=k), labels((4, 16, 16), 5, seed=k)) for k in range(8)]

    def grad_of(f, x, y):
        x = x.clone().requires_grad_(True)
        f(x, y, reduction="sum").backward()
        return x.grad

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ours = list(pool.map(lambda case: grad_of(flt.cross_entropy, *case), cases * 3))
    for k, grad in enumerate(ours):
        torch.testing.assert_close(grad, grad_of(F.cross_entropy, *cases[k % len(cases)]))


@pytest.mark.parametrize("kind", ["normal", "large", "huge", "nan", "ties"])
@pytest.mark.parametrize("n_classes", [1, 3, 9, 10, 21])
def test_spatial_cross_entropy_lanes_are_the_plane_loops_bit_for_bit(kind, n_classes):
    # float32 blocks whose positions are a multiple of 16 (labels, no
    # weights or smoothing, finite maxima) keep their per-position values in
    # registers across the class planes (the x86-64-v3 build); other blocks
    # take the plane loops.  The same scores laid out with S = 112 (one block
    # of 112 positions) and S = 113 (one block of 113) must give the same
    # bits at the 112 shared positions.
    x = randn(3, n_classes, 113, dtype=torch.float32, seed=n_classes, scale=3.0)
    if kind == "large":
        x = x * 1e4
    elif kind == "huge":
        x[:, :, ::5] = 3e38 * torch.sign(x[:, :, ::5])
    elif kind == "nan":
        x[0, 0, 3], x[1, n_classes - 1, 50], x[2, :, 77] = float("nan"), float("nan"), float("nan")
    elif kind == "ties":
        x = torch.round(x)
    y = labels((3, 113), n_classes, seed=2)
    y[:, ::9] = -100
    results = []
    for width in (112, 113):
        x_w = x[:, :, :width].contiguous().requires_grad_(True)
        loss = flt.cross_entropy(x_w, y[:, :width].contiguous(), reduction="none")
        assert fused(loss)
        loss.sum().backward()
        results.append((loss.detach()[:, :112], x_w.grad[:, :, :112]))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.equal(loss_a.view(torch.int32), loss_b.view(torch.int32))
    assert torch.equal(grad_a.view(torch.int32), grad_b.view(torch.int32))
    if kind == "normal":
        torch.testing.assert_close(loss_a, F.cross_entropy(x[:, :, :112], y[:, :112],
                                                           reduction="none"))


def test_spatial_cross_entropy_is_bit_identical_for_every_thread_count():
    x, y = randn(4, 21, 32, 32, dtype=torch.float32), labels((4, 32, 32), 21, seed=1)
    previous = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            x_n = x.clone().requires_grad_(True)
            flt.cross_entropy(x_n, y, label_smoothing=0.1).backward()
            results.append(x_n.grad)
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(grad, results[0]) for grad in results[1:])


# --- autograd ----------------------------------------------------------------------

GRADCHECK_CASES = {
    "nll_loss": lambda x: flt.nll_loss(x, torch.tensor([0, 2, -100, 1]),
                                       rand(3, seed=5) + 0.5),
    "nll_loss_none_spatial": lambda x: flt.nll_loss(x.reshape(2, 3, 2),
                                                    torch.tensor([[0, 2], [1, 1]]),
                                                    reduction="none"),
    "kl_div_batchmean": lambda x: flt.kl_div(x, rand(4, 3, seed=6), reduction="batchmean"),
    "kl_div_none_log_target": lambda x: flt.kl_div(x, randn(4, 3, seed=7), reduction="none",
                                                   log_target=True),
    "cross_entropy_spatial": lambda x: flt.cross_entropy(
        x.reshape(2, 3, 2), torch.tensor([[0, 2], [-100, 1]]), rand(3, seed=8) + 0.5,
        label_smoothing=0.1),
    "cross_entropy_spatial_none": lambda x: flt.cross_entropy(
        x.reshape(2, 3, 2), torch.softmax(randn(2, 3, 2, seed=9), 1), reduction="none"),
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


@pytest.mark.parametrize("name", ["nll_loss", "kl_div", "cross_entropy"])
def test_inference_does_no_gradient_work(name):
    x, target = {
        "nll_loss": (log_probabilities(6, 4), labels((6,), 4)),
        "kl_div": kl_inputs((6, 4), torch.float64, False),
        "cross_entropy": (randn(2, 4, 3), labels((2, 3), 4)),
    }[name]
    x.requires_grad_(True)
    with torch.no_grad():
        loss = kl_silently(getattr(flt, name))(x, target)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, kl_silently(getattr(F, name))(x, target).detach())


@pytest.mark.parametrize("name", ["nll_loss", "kl_div", "cross_entropy"])
def test_forward_mode_ad_gives_torchs_tangent(name):
    x, target = {
        "nll_loss": (log_probabilities(6, 4, 3), labels((6, 3), 4)),
        "kl_div": kl_inputs((6, 4), torch.float64, False),
        "cross_entropy": (randn(6, 4, 3), labels((6, 3), 4)),
    }[name]
    tangent = randn(*x.shape, seed=12)
    results = []
    for f in (flt, F):
        with forward_ad.dual_level():
            out = kl_silently(getattr(f, name))(forward_ad.make_dual(x, tangent), target,
                                                reduction="sum")
            results.append(forward_ad.unpack_dual(out))
    torch.testing.assert_close(results[0].primal, results[1].primal)
    assert results[0].tangent is not None
    torch.testing.assert_close(results[0].tangent, results[1].tangent)


# --- torch.compile ------------------------------------------------------------------

N_FEATURES = 6
COMPILE_CASES = {
    # name: (the loss of the model's output, the target for n rows, the operator)
    "nll_loss": (lambda f, out, t: f.nll_loss(torch.log_softmax(out, 1), t, ignore_index=2),
                 lambda n: labels((n,), 5, seed=n), "nll_loss"),
    "nll_loss_spatial_none": (
        lambda f, out, t: f.nll_loss(torch.log_softmax(out.reshape(-1, 5, 2), 1), t,
                                     reduction="none"),
        lambda n: labels((n // 2, 2), 5, seed=n), "nll_loss"),
    "kl_div": (lambda f, out, t: f.kl_div(torch.log_softmax(out, 1), t, reduction="batchmean"),
               lambda n: torch.softmax(randn(n, 5, seed=n, dtype=torch.float32), 1), "kl_div"),
    "kl_div_log_target_none": (
        lambda f, out, t: f.kl_div(torch.log_softmax(out, 1), t, reduction="none",
                                   log_target=True),
        lambda n: torch.log_softmax(randn(n, 5, seed=n, dtype=torch.float32), 1), "kl_div"),
    "cross_entropy_spatial": (
        lambda f, out, t: f.cross_entropy(out.reshape(-1, 5, 2), t, label_smoothing=0.1),
        lambda n: labels((n // 2, 2), 5, seed=n), "cross_entropy"),
    "cross_entropy_spatial_none": (
        lambda f, out, t: f.cross_entropy(out.reshape(-1, 5, 2), t, reduction="none"),
        lambda n: labels((n // 2, 2), 5, seed=n), "cross_entropy"),
}


def model(n_outputs):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, n_outputs))


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
    spatial = "spatial" in name
    net = model(10 if spatial else 5)
    x = torch.randn(16, N_FEATURES, generator=generator(0))
    target = make_target(16 * 2 if spatial else 16)

    def fast_step(x, target):
        return loss_fn(flt, net(x), target)

    explanation = torch._dynamo.explain(fast_step)(x, target)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    assert f"fastloss.{op}" in explanation.graphs[0].code
    torch._dynamo.reset()

    compiled = torch.compile(fast_step, fullgraph=True, backend="aot_eager")
    x2 = torch.randn(9, N_FEATURES, generator=generator(2))
    target2 = make_target(9 * 2 if spatial else 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads = loss_and_grads(net, compiled, x, target)
        loss2, grads2 = loss_and_grads(net, compiled, x2, target2)
    ref_loss, ref_grads = loss_and_grads(net, lambda x, t: loss_fn(F, net(x), t), x, target)
    ref_loss2, ref_grads2 = loss_and_grads(net, lambda x, t: loss_fn(F, net(x), t), x2, target2)
    for got, expected in ((loss, ref_loss), (loss2, ref_loss2)):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for got, expected in zip(grads + grads2, ref_grads + ref_grads2):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_compiled_kl_div_mean_warns_as_torch_does(fresh_dynamo):
    # (torch's own function, traced: a warning of fastloss's would break the graph)
    x, t = kl_inputs((4, 3), torch.float32, False)
    results = []
    for f in (flt, F):
        torch._dynamo.reset()
        with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
            explanation = torch._dynamo.explain(lambda x, t: f.kl_div(x, t))(x, t)
        assert explanation.graph_break_count == 0
        torch._dynamo.reset()
        with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
            results.append(torch.compile(lambda x, t: f.kl_div(x, t), fullgraph=True,
                                         backend="aot_eager")(x, t))
    torch.testing.assert_close(results[0], results[1])


def test_compiled_inference_and_torchs_nan_mean(fresh_dynamo):
    @torch.compile(fullgraph=True, backend="aot_eager")
    def evaluate(x, target):
        with torch.no_grad():
            return flt.nll_loss(x, target)

    x = log_probabilities(7, 4, dtype=torch.float32)
    target = labels((7,), 4)
    torch.testing.assert_close(evaluate(x, target), F.nll_loss(x, target))
    # Every label ignored: the operator computes torch's answer (NaN).
    assert torch.isnan(evaluate(x, torch.full((7,), -100)))


OPCHECK_CASES = [
    ("nll_loss", lambda x: (x, labels((6,), 5), None, -100, "mean")),
    ("nll_loss", lambda x: (x.reshape(3, 5, 2), labels((3, 2), 5), rand(5).to(x.dtype), 1,
                            "none")),
    ("nll_loss", lambda x: (x[0], labels((), 5), None, -100, "sum")),
    ("kl_div", lambda x: (x, rand(6, 5).to(x.dtype), "batchmean", False)),
    ("kl_div", lambda x: (x, randn(6, 5).to(x.dtype), "none", True)),
    ("kl_div", lambda x: (x, rand(6, 5).to(x.dtype), "mean", False)),
    # (the operator's last two arguments before need_grad: z_loss, softcap)
    ("cross_entropy", lambda x: (x.reshape(3, 5, 2), labels((3, 2), 5), None, -100, "none",
                                 0.1, 0.0, None)),
    ("cross_entropy", lambda x: (x.reshape(3, 5, 2), torch.softmax(randn(3, 5, 2), 1).to(
        x.dtype), rand(5).to(x.dtype), -100, "mean", 0.0, 0.0, None)),
]


@pytest.mark.parametrize("need_grad, dtype", [(True, torch.float32), (False, torch.float64)])
@pytest.mark.parametrize("case", range(len(OPCHECK_CASES)))
def test_custom_operators_pass_torchs_opcheck(case, need_grad, dtype):
    name, make_args = OPCHECK_CASES[case]
    x = torch.randn(6, 5, generator=generator(5), dtype=dtype)
    args = make_args(x.requires_grad_(need_grad))
    torch.library.opcheck(getattr(torch.ops.fastloss, name), args + (need_grad,))
