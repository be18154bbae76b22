"""Parity of the elementwise losses with PyTorch (skipped when torch is absent).

Values come from ``torch.nn.functional`` and gradients from autograd: for
reduction="none" the gradient of the sum of the per-element losses, which is
what our "none" gradient holds row by row.
"""
import numpy as np
import pytest

import fastloss
from helpers import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(257,), (64, 5)]


def _torch_loss_grad(function, pred, target, reduction, **kwargs):
    x = torch.from_numpy(pred.copy()).requires_grad_(True)
    loss = function(x, torch.from_numpy(target), reduction=reduction, **kwargs)
    loss.sum().backward()
    value = loss.detach().numpy() if reduction == "none" else float(loss.detach())
    return value, x.grad.numpy()


def _compare(result, value, grad, dtype, grad_scale):
    if isinstance(value, float):
        assert type(result.loss) is float
    assert_close(result.loss, value, dtype, scale=10.0)
    assert_close(result.grad, grad, dtype, scale=grad_scale)


def _inputs(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(scale=2.0, size=shape).astype(dtype),
            rng.normal(size=shape).astype(dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_mse_matches_torch(dtype, reduction, shape):
    pred, target = _inputs(shape, dtype, 0)
    value, grad = _torch_loss_grad(F.mse_loss, pred, target, reduction)
    _compare(fastloss.mse(pred, target, reduction=reduction), value, grad, dtype, 20.0)


@pytest.mark.parametrize("delta", [1.0, 0.3, 5.0])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_huber_matches_torch(dtype, reduction, shape, delta):
    pred, target = _inputs(shape, dtype, 1)
    value, grad = _torch_loss_grad(F.huber_loss, pred, target, reduction, delta=delta)
    _compare(fastloss.huber(pred, target, delta=delta, reduction=reduction), value, grad, dtype,
             delta)


def _bce_inputs(shape, dtype, seed, extreme=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=shape)
    if extreme:
        # Logits past float32's exp overflow (+-88.7) and float64's (+-709.8).
        logits.reshape(-1)[::4] = rng.choice([-1e4, -750.0, -100.0, 100.0, 750.0, 1e4],
                                             size=logits.reshape(-1)[::4].shape)
    target = rng.uniform(size=shape)
    target.reshape(-1)[::3] = rng.integers(0, 2, size=target.reshape(-1)[::3].shape)
    return logits.astype(dtype), target.astype(dtype)


@pytest.mark.parametrize("extreme", [False, True], ids=["moderate", "extreme"])
@pytest.mark.parametrize("pos_weight", [None, "scalar", "per-column"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_binary_cross_entropy_matches_torch(dtype, reduction, shape, pos_weight, extreme):
    logits, target = _bce_inputs(shape, dtype, 2, extreme)
    n_columns = 1 if len(shape) == 1 else shape[1]
    if pos_weight == "scalar":
        pw = 2.5
        torch_pw = torch.tensor(pw, dtype=torch.from_numpy(logits).dtype)
    elif pos_weight == "per-column":
        pw = np.linspace(0.5, 3.0, n_columns).astype(dtype)
        torch_pw = torch.from_numpy(pw)
    else:
        pw = torch_pw = None
    value, grad = _torch_loss_grad(F.binary_cross_entropy_with_logits, logits, target,
                                   reduction, pos_weight=torch_pw)
    result = fastloss.binary_cross_entropy(logits, target, pos_weight=pw, reduction=reduction)
    loss_scale = 1e4 * 3.0 if extreme else 10.0     # losses grow like |logit|
    if isinstance(value, float):
        assert type(result.loss) is float
    assert_close(result.loss, value, dtype, scale=loss_scale)
    assert_close(result.grad, grad, dtype, scale=3.0)
    assert np.isfinite(result.loss).all() and np.isfinite(result.grad).all()


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_bce_sample_weight_matches_torch_weight(dtype, shape, reduction):
    # torch's weight= multiplies each element's loss; a per-row weight
    # broadcast over the columns is our sample_weight for "sum" and "none".
    # (Our weighted "mean" divides by the total weight, which torch does not.)
    logits, target = _bce_inputs(shape, dtype, 3)
    weight = np.random.default_rng(4).uniform(0.0, 2.0, size=shape[0])
    torch_weight = torch.from_numpy(weight.astype(dtype))
    if len(shape) == 2:
        torch_weight = torch_weight[:, None]
    value, grad = _torch_loss_grad(F.binary_cross_entropy_with_logits, logits, target,
                                   reduction, weight=torch_weight)
    result = fastloss.binary_cross_entropy(logits, target, sample_weight=weight,
                                           reduction=reduction)
    _compare(result, value, grad, dtype, 2.0)
