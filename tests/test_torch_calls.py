"""fastloss.torch's compiled call path (fastloss._torch_calls) against its Python path.

The compiled path takes the common small call and must give exactly what the
Python path gives (the same kernel chunk, the same roundings), leave every
other call to it, and leave its inputs untouched.
"""
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastloss.torch as flt  # noqa: E402
from fastloss import _torch_calls  # noqa: E402

DTYPES = (torch.float32, torch.float64)
REDUCTIONS = ("mean", "sum", "none")


def randn(*shape, dtype=torch.float32, seed=0, scale=2.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


def labels(n, c, seed=0):
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


# name: (call, inputs(dtype, n)): every loss the compiled path takes, with a small input.
def _positive(n, dtype):
    return randn(n, dtype=dtype, seed=1).abs() + 0.5


CASES = {
    "cross_entropy": (lambda x, t, r: flt.cross_entropy(x, t, reduction=r),
                      lambda dtype: (randn(37, 11, dtype=dtype), labels(37, 11))),
    "mse_loss": (lambda x, t, r: flt.mse_loss(x, t, reduction=r),
                 lambda dtype: (randn(300, dtype=dtype), randn(300, dtype=dtype, seed=1))),
    "huber_loss": (lambda x, t, r: flt.huber_loss(x, t, reduction=r, delta=0.7),
                   lambda dtype: (randn(300, dtype=dtype), randn(300, dtype=dtype, seed=1))),
    "binary_cross_entropy_with_logits": (
        lambda x, t, r: flt.binary_cross_entropy_with_logits(x, t, reduction=r),
        lambda dtype: (randn(20, 15, dtype=dtype), torch.rand(20, 15, dtype=dtype))),
    "l1_loss": (lambda x, t, r: flt.l1_loss(x, t, reduction=r),
                lambda dtype: (randn(300, dtype=dtype), randn(300, dtype=dtype, seed=1))),
    "poisson_nll_loss": (lambda x, t, r: flt.poisson_nll_loss(x, t, reduction=r, full=True),
                         lambda dtype: (randn(300, dtype=dtype, scale=1.0),
                                        torch.poisson(_positive(300, dtype) * 3))),
    "poisson_nll_loss rates": (
        lambda x, t, r: flt.poisson_nll_loss(x, t, log_input=False, reduction=r),
        lambda dtype: (_positive(300, dtype), torch.poisson(_positive(300, dtype) * 3))),
    "sigmoid_focal_loss": (
        lambda x, t, r: flt.sigmoid_focal_loss(x, t, reduction=r),
        lambda dtype: (randn(300, dtype=dtype), (torch.rand(300) > 0.8).to(dtype))),
    # (nll_loss from 65,536 elements: smaller calls are torch's own)
    "nll_loss": (lambda x, t, r: flt.nll_loss(x, t, reduction=r),
                 lambda dtype: (torch.log_softmax(randn(300, 256, dtype=dtype), 1),
                                labels(300, 256))),
    # (N, C, d1, ...) cross_entropy from 65,536 elements (smaller calls are torch's own)
    "cross_entropy spatial": (lambda x, t, r: flt.cross_entropy(x, t, reduction=r),
                              lambda dtype: (randn(4, 5, 64, 65, dtype=dtype),
                                             labels(4 * 64 * 65, 5).reshape(4, 64, 65))),
    "cross_entropy spatial ignored": (
        lambda x, t, r: flt.cross_entropy(x, t, reduction=r, ignore_index=3),
        lambda dtype: (randn(2, 7, 3, 40, 40, dtype=dtype),
                       labels(2 * 3 * 40 * 40, 7).reshape(2, 3, 40, 40))),
    "nll_loss ignored": (lambda x, t, r: flt.nll_loss(x, t, reduction=r, ignore_index=3),
                         lambda dtype: (torch.log_softmax(randn(300, 256, dtype=dtype), 1),
                                        labels(300, 256) % 8)),
}


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls the compiled path took (returned a loss)."""
    taken = []

    def wrap(function):
        def spied(*args):
            result = function(*args)
            if result is not None:
                taken.append(result)
            return result
        return spied

    monkeypatch.setattr(flt, "_compiled_call", wrap(_torch_calls.elementwise))
    monkeypatch.setattr(flt, "_compiled_cross_entropy", wrap(_torch_calls.cross_entropy))
    monkeypatch.setattr(flt, "_compiled_nll_loss", wrap(_torch_calls.nll_loss))
    return taken


def python_path(monkeypatch):
    monkeypatch.setattr(flt, "_compiled_call", lambda *args: None)
    monkeypatch.setattr(flt, "_compiled_cross_entropy", lambda *args: None)
    monkeypatch.setattr(flt, "_compiled_nll_loss", lambda *args: None)


def loss_and_grad(call, x, t, reduction, requires_grad=True):
    x = x.clone().requires_grad_(requires_grad)
    loss = call(x, t, reduction)
    if not requires_grad:
        return loss, None
    assert type(loss.grad_fn).__name__ == "_FusedLossBackward"
    (grad,) = torch.autograd.grad(loss, x, torch.ones_like(loss) * 0.5 + (loss.dim() > 0))
    return loss.detach(), grad


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("requires_grad", [True, False])
def test_compiled_path_is_bit_identical_to_the_python_path(spy, monkeypatch, name, dtype,
                                                         reduction, requires_grad):
    call, make = CASES[name]
    x, t = make(dtype)
    x_before, t_before = x.clone(), t.clone()
    fast = loss_and_grad(call, x, t, reduction, requires_grad)
    assert len(spy) == 1                # the compiled path took the call
    assert torch.equal(x, x_before) and torch.equal(t, t_before)
    python_path(monkeypatch)
    slow = loss_and_grad(call, x, t, reduction, requires_grad)
    for got, expected in zip(fast, slow):
        assert (got is None) == (expected is None)
        if got is not None:
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert torch.equal(got, expected) or (got.isnan() == expected.isnan()).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_path_agrees_with_torch(spy, dtype):
    for name, (call, make) in CASES.items():
        if name.startswith("poisson") or name.startswith("sigmoid"):
            continue                    # (theirs: fastloss.torch's own tests)
        x, t = make(dtype)
        for reduction in REDUCTIONS:
            ours = loss_and_grad(call, x, t, reduction)
            torch_name = name.split()[0]
            theirs_call = {"huber_loss": lambda x, t, r: F.huber_loss(x, t, reduction=r,
                                                                       delta=0.7),
                           "nll_loss ignored": lambda x, t, r: F.nll_loss(
                               x, t, reduction=r, ignore_index=3),
                           "cross_entropy spatial ignored": lambda x, t, r: F.cross_entropy(
                               x, t, reduction=r, ignore_index=3)}.get(
                name, lambda x, t, r: getattr(F, torch_name)(x, t, reduction=r))
            x2 = x.clone().requires_grad_(True)
            theirs = theirs_call(x2, t, reduction)
            (grad,) = torch.autograd.grad(theirs, x2, torch.ones_like(theirs) * 0.5
                                          + (theirs.dim() > 0))
            torch.testing.assert_close(ours[0], theirs.detach())
            torch.testing.assert_close(ours[1], grad)
    assert spy


def test_the_gradient_is_moved_into_grad_not_copied():
    for x, call in ((randn(16, 8), lambda x: flt.cross_entropy(x, labels(16, 8))),
                    (randn(300), lambda x: flt.mse_loss(x, randn(300, seed=1)))):
        x.requires_grad_(True)
        loss = call(x)
        (saved,) = loss.grad_fn.saved_tensors
        pointer = saved.data_ptr()
        del saved
        loss.backward()
        assert x.grad.data_ptr() == pointer


def test_cases_the_compiled_path_leaves(spy):
    x, t = randn(8, 5).requires_grad_(True), labels(8, 5)
    y = randn(8, 5, seed=1)
    ce = _torch_calls.cross_entropy
    mse = lambda x, y, r="mean": _torch_calls.elementwise(  # noqa: E731
        flt._MSE, x, y, r, 0.0, 0.0, 0.0, None)
    big, big_t = randn(2, 5, 80, 90), labels(2 * 80 * 90, 5).reshape(2, 80, 90)
    bad_t = big_t.clone()
    bad_t[1, 79, 89] = 5
    left = [
        ce(x.t(), t, -100, "mean", None),                   # not contiguous
        ce(torch._neg_view(x.detach()), t, -100, "mean", None),     # negation bit
        ce(x.half(), t, -100, "mean", None),                # other dtype
        ce(x, t.int(), -100, "mean", None),                 # labels not int64
        ce(x, torch.tensor([0, 1, 5, 0, 0, 0, 0, 0]), -100, "mean", None),   # label >= C
        ce(x, torch.tensor([0, 1, -100, 0, 0, 0, 0, 0]), -100, "mean", None),  # ignored
        ce(x, torch.tensor([0, 1, 2, 0, 0, 0, 0, 0]), 2, "mean", None),  # ignore_index in range
        ce(x, t, True, "mean", None),                       # a bool ignore_index
        ce(x, t, 2**70, "mean", None),                      # beyond int64
        ce(x, t, -100, "avg", None),                        # unknown reduction
        ce(x, t[:7], -100, "mean", None),                   # shapes
        ce(x[0], t[0], -100, "mean", None),                 # (C,) input
        ce(randn(0, 5), labels(0, 5), -100, "mean", None),   # empty
        ce(randn(4096, 10), labels(4096, 10), -100, "mean", None),  # beyond one chunk
        ce(randn(2, 5, 8, 8), labels(128, 5).reshape(2, 8, 8), -100, "mean", None),  # small
        ce(big.movedim(1, -1).contiguous().movedim(-1, 1), big_t, -100, "mean", None),  # NHWC
        ce(big, bad_t, -100, "mean", None),                 # (N, C, d1, ...): a label >= C
        ce(big, torch.full_like(big_t, -100), -100, "mean", None),  # "mean" over nothing
        ce(big, big_t[:, :32], -100, "mean", None),         # (N, C, d1, ...): shapes
        mse(x, y.requires_grad_(True)),                     # target requiring grad
        mse(x, y.detach()[:4]),                             # broadcasting
        mse(x, y.detach().double()),                        # promotion
        mse(randn(40_000), randn(40_000)),                  # beyond one chunk
        mse(x.detach().to_sparse(), y.detach().to_sparse()),   # layout
    ]
    assert all(result is None for result in left)
    assert not spy


def test_autograd_states_the_compiled_path_leaves(spy):
    import torch.autograd.forward_ad as fwAD
    x, t = randn(8, 5).requires_grad_(True), labels(8, 5)
    with fwAD.dual_level():
        assert _torch_calls.cross_entropy(x, t, -100, "mean", None) is None
        dual = fwAD.make_dual(x.detach(), randn(8, 5, seed=3))
        torch.testing.assert_close(flt.cross_entropy(dual, t), F.cross_entropy(dual, t))
    grads = torch.func.grad(lambda v: flt.cross_entropy(v, t))(x.detach())
    torch.testing.assert_close(grads, torch.func.grad(lambda v: F.cross_entropy(v, t))(
        x.detach()))
    with torch.no_grad():
        loss = flt.cross_entropy(x, t)
    assert loss.grad_fn is None and len(spy) == 1
    torch.testing.assert_close(loss, F.cross_entropy(x, t).detach())


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_it_refuses_give_torchs_answer(spy, dtype):
    nan = float("nan")
    # l1 at a NaN residual: torch's gradient is 0 there
    x = randn(10, dtype=dtype).requires_grad_(True)
    t = randn(10, dtype=dtype, seed=1)
    t[3] = nan
    for f in (flt.l1_loss, F.l1_loss):
        x.grad = None
        f(x, t).backward()
        if f is flt.l1_loss:
            ours = x.grad.clone()
    torch.testing.assert_close(ours, x.grad)
    # Poisson: log-rates whose exp overflows, negative counts; focal: targets beyond [0, 1]
    big = torch.tensor([1.0, 800.0 if dtype == torch.float64 else 100.0], dtype=dtype)
    count = torch.tensor([1.0, -2.0], dtype=dtype)
    for args, ours, theirs in (
            ((big, torch.ones(2, dtype=dtype)), flt.poisson_nll_loss, F.poisson_nll_loss),
            ((torch.ones(2, dtype=dtype), count), flt.poisson_nll_loss, F.poisson_nll_loss),
            ((torch.ones(2, dtype=dtype), torch.tensor([0.5, 2.0], dtype=dtype)),
             lambda x, t: flt.sigmoid_focal_loss(x, t, reduction="sum"),
             lambda x, t: flt._torch_sigmoid_focal_loss(x, t, 0.25, 2, "sum"))):
        torch.testing.assert_close(ours(*args), theirs(*args), equal_nan=True)
    assert not spy


def test_bad_labels_raise_torchs_error():
    x = randn(4, 3).requires_grad_(True)
    for bad in (torch.tensor([0, 1, 3, 0]), torch.tensor([0, -5, 1, 0])):
        with pytest.raises(Exception) as expected:
            F.cross_entropy(x, bad)
        with pytest.raises(expected.type):
            flt.cross_entropy(x, bad)
    # rows to ignore: torch's answer
    y = torch.tensor([0, -100, 2, 1])
    torch.testing.assert_close(flt.cross_entropy(x, y), F.cross_entropy(x, y))


def test_a_float32_sum_beyond_its_range_is_inf_as_torchs():
    x = torch.full((4,), 3e38).requires_grad_(True)
    ours, theirs = (f(x, -x, reduction="sum") for f in (flt.l1_loss, F.l1_loss))
    assert ours.item() == theirs.item() == float("inf")


def test_nll_loss_cases_the_compiled_path_leaves(spy):
    x = torch.log_softmax(randn(300, 256), 1).requires_grad_(True)
    t = labels(300, 256)
    nll = _torch_calls.nll_loss
    bad = t.clone()
    bad[299] = 256
    left = [
        nll(x, bad, -100, "mean", None),                    # label >= C: torch's error
        nll(x, torch.full((300,), 7), 7, "mean", None),     # a mean over nothing: NaN
        nll(x.t(), t, -100, "mean", None),                  # not contiguous
        nll(x.reshape(300, 16, 16), t.reshape(300, 1).expand(300, 16).contiguous(),
            -100, "mean", None),                            # (N, C, d1): the Python path
        nll(x, t.int(), -100, "mean", None),                # labels not int64
        nll(x, t, True, "mean", None),                      # a bool ignore_index
        nll(x, t, -100, "avg", None),                       # unknown reduction
        nll(x, t[:7], -100, "mean", None),                  # shapes
    ]
    assert all(result is None for result in left)
    assert not spy
    # torch's own answers for the calls left: its error, its NaN
    with pytest.raises(Exception) as expected:
        F.nll_loss(x, bad)
    with pytest.raises(expected.type):
        flt.nll_loss(x, bad)
    everything_ignored = torch.full((300,), 7)
    assert flt.nll_loss(x, everything_ignored, ignore_index=7).isnan()
    assert not spy


def test_spatial_cross_entropy_compiled_path_gradcheck(spy, monkeypatch):
    monkeypatch.setattr(flt, "_TORCH_BELOW_ELEMENTS", 1)    # small calls fused too
    x = randn(2, 4, 3, 2, dtype=torch.float64).requires_grad_(True)
    t = torch.tensor([[[0, 3], [2, 2], [3, 1]], [[1, 1], [0, 2], [3, 3]]])
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda v: flt.cross_entropy(v, t, reduction=reduction, ignore_index=2), (x,))
    assert spy


def test_spatial_cross_entropy_compiled_path_bad_labels(spy):
    x, t = randn(2, 5, 80, 90).requires_grad_(True), labels(2 * 80 * 90, 5).reshape(2, 80, 90)
    x_before, t_before = x.detach().clone(), t.clone()
    for label in (5, -1, 2**40):
        bad = t.clone()
        bad[1, 79, 89] = label
        with pytest.raises((IndexError, RuntimeError)) as expected:
            F.cross_entropy(x, bad)
        with pytest.raises(expected.type, match=str(expected.value).split()[0]):
            flt.cross_entropy(x, bad)
    assert flt.cross_entropy(x, torch.full_like(t, 7), ignore_index=7).isnan()
    assert torch.equal(x.detach(), x_before) and torch.equal(t, t_before)
    assert not spy


def test_nll_loss_compiled_path_gradcheck_and_weights(spy, monkeypatch):
    monkeypatch.setattr(flt, "_TORCH_BELOW_ELEMENTS", 1)    # small calls fused too
    x = torch.log_softmax(randn(7, 6, dtype=torch.float64), 1).requires_grad_(True)
    t = torch.tensor([0, 5, 2, 2, 5, 1, 3])
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda v: flt.nll_loss(v, t, reduction=reduction, ignore_index=5), (x,))
    assert spy
    x = torch.log_softmax(randn(256, 256, dtype=torch.float64), 1).requires_grad_(True)
    t = labels(256, 256) % 200
    # class weights: the Python path (its kernel), torch's values
    spy.clear()
    w = torch.rand(256, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for reduction in REDUCTIONS:
        ours = flt.nll_loss(x, t, w, reduction=reduction)
        assert type(ours.grad_fn).__name__ == "_FusedLossBackward"
        torch.testing.assert_close(ours, F.nll_loss(x, t, w, reduction=reduction))
    assert not spy
