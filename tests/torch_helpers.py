"""Helpers shared by the tests of fastloss.torch (imported after torch is).

``compare`` is the parity check every fast-path test uses: the loss and the
gradients of fastloss.torch and of torch on clones of the same inputs, and a
check that the fused autograd node really ran (its grad_fn), so that a silent
fallback to torch cannot make a parity test pass.
"""
import torch

REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [torch.float32, torch.float64]
# torch computes float32 losses with float32 sums and several roundings per
# element; fastloss sums in float64 and rounds less.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}
FUSED = ("_FusedLossBackward", "_FusedGaussianBackward")


def fused(result):
    """Whether ``result`` came out of a fused fastloss.torch autograd node."""
    return result.grad_fn is not None and type(result.grad_fn).__name__ in FUSED


def generator(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float64, seed=0, scale=1.0):
    return (torch.randn(shape, generator=generator(seed)) * scale).to(dtype)


def rand(*shape, dtype=torch.float64, seed=0):
    return torch.rand(shape, generator=generator(seed)).to(dtype)


def labels(shape, n_classes, seed=0):
    """Class labels in [0, n_classes) of ``shape`` (an int for a vector)."""
    shape = (shape,) if isinstance(shape, int) else shape
    return torch.randint(0, n_classes, shape, generator=generator(seed))


def compare(fast_fn, torch_fn, inputs, dtype, expect_fused=True, differentiated=(0,),
            grad_output=None, tol=None, same_strides=False):
    """Loss and gradients of fast_fn and torch_fn on clones of inputs agree.

    ``differentiated`` are the positions of the inputs that require a
    gradient; grad_output defaults to random values for an unreduced loss
    and to 1 (the plain loss.backward()) else.  With ``same_strides`` each
    gradient also has torch's layout.  The inputs are left as they were.
    Returns fastloss's loss.
    """
    tol = tol or TOL[dtype]
    copies = [[t.detach().clone().requires_grad_(True) if k in differentiated else t
               for k, t in enumerate(inputs)] for _side in range(2)]
    before = [t.clone() for t in inputs if isinstance(t, torch.Tensor)]
    out_fast = fast_fn(*copies[0])
    out_torch = torch_fn(*copies[1])
    assert fused(out_fast) == expect_fused, type(out_fast.grad_fn).__name__
    assert out_fast.dtype == out_torch.dtype and out_fast.shape == out_torch.shape
    torch.testing.assert_close(out_fast, out_torch, **tol, equal_nan=True)
    if grad_output is None:
        grad_output = torch.rand_like(out_torch) + 0.5 if out_torch.dim() else \
            torch.tensor(1.0, dtype=out_torch.dtype)
    out_fast.backward(grad_output)
    out_torch.backward(grad_output)
    for k in differentiated:
        got, expected = copies[0][k].grad, copies[1][k].grad
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, **tol, equal_nan=True)
        if same_strides:
            assert got.stride() == expected.stride()
    after = [t for t in inputs if isinstance(t, torch.Tensor)]
    for b, a in zip(before, after):
        assert torch.equal(a.detach(), b) or (a.isnan() == b.isnan()).all()
    return out_fast
