"""fastloss.torch.linear_cross_entropy and LinearCrossEntropyLoss against torch's
F.linear + F.cross_entropy: values, gradients through autograd, gradcheck."""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
import fastloss.torch as flt  # noqa: E402  (after the importorskip)

N_ROWS, N_FEATURES, N_CLASSES = 33, 6, 9
TOLERANCE = {torch.float32: dict(rtol=5e-5, atol=5e-6), torch.float64: dict(rtol=1e-10,
                                                                           atol=1e-12)}


def make_inputs(dtype=torch.float64, with_bias=True, seed=0, n_rows=N_ROWS):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n_rows, N_FEATURES, dtype=dtype, generator=generator)
    weight = torch.randn(N_CLASSES, N_FEATURES, dtype=dtype, generator=generator)
    bias = torch.randn(N_CLASSES, dtype=dtype, generator=generator) if with_bias else None
    target = torch.randint(0, N_CLASSES, (n_rows,), generator=generator)
    target[::5] = -100              # torch's default ignore_index
    return hidden, weight, bias, target


FUSED = "_LinearCrossEntropyBackward"


def loss_and_grads(function, hidden, weight, bias, target, grad_output=None, fused=None,
                   **options):
    """The loss and the gradients of sum(grad_output * loss) for hidden, weight, bias.

    ``fused``: whether the loss must come from the fused layer (True), from
    torch's own functions (False), or either (None).
    """
    leaves = [t.clone().requires_grad_(True) for t in (hidden, weight)]
    if bias is not None:
        leaves.append(bias.clone().requires_grad_(True))
    loss = function(leaves[0], leaves[1], target, leaves[2] if bias is not None else None,
                    **options)
    if fused is not None:
        assert (type(loss.grad_fn).__name__ == FUSED) == fused
    if grad_output is None:
        grad_output = torch.ones_like(loss)
    grads = torch.autograd.grad(loss, leaves, grad_output)
    return (loss.detach(),) + grads


def torch_linear_cross_entropy(input, weight, target, bias=None, class_weight=None,
                               z_loss=0.0, softcap=None, ignore_index=-100, reduction="mean",
                               **options):
    """F.linear + F.cross_entropy, with the z-loss and the softcap written in torch
    (API.md: the cap before the softmax; z lse^2 of the capped logits per row counted,
    ignored rows left out, "mean" by the cross-entropy's denominator)."""
    logits = F.linear(input, weight, bias)
    if z_loss == 0.0 and softcap is None:
        return F.cross_entropy(logits, target, weight=class_weight, ignore_index=ignore_index,
                               reduction=reduction, **options)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    rows = F.cross_entropy(logits, target, weight=class_weight, ignore_index=ignore_index,
                           reduction="none", **options)
    counted = target != ignore_index
    rows = rows + z_loss * torch.logsumexp(logits, dim=1) ** 2 * counted
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    labels = torch.where(counted, target, 0)
    weights = counted.to(rows.dtype) if class_weight is None else class_weight[labels] * counted
    return rows.sum() / weights.sum()


# (z_loss, softcap): neither, each alone, both (the cap of 2.5 bends most logits)
EXTRAS = [(0.0, None), (0.01, None), (0.0, 2.5), (0.01, 2.5)]
GRID = list(itertools.product([torch.float32, torch.float64], [False, True], [False, True],
                              [0.0, 0.25], EXTRAS, ["mean", "sum", "none"], [None, 1, 8]))


@pytest.mark.parametrize(
    "dtype,with_bias,weighted,label_smoothing,extras,reduction,chunk_rows", GRID)
def test_matches_torch(dtype, with_bias, weighted, label_smoothing, extras, reduction,
                       chunk_rows):
    hidden, weight, bias, target = make_inputs(dtype, with_bias)
    class_weight = torch.linspace(0.5, 2.0, N_CLASSES, dtype=dtype) if weighted else None
    grad_output = None
    if reduction == "none":
        grad_output = torch.linspace(-1.0, 2.0, N_ROWS, dtype=dtype)
    elif reduction == "sum":
        grad_output = torch.tensor(0.5, dtype=dtype)
    z_loss, softcap = extras
    options = dict(class_weight=class_weight, label_smoothing=label_smoothing,
                   z_loss=z_loss, softcap=softcap, reduction=reduction)
    ours = loss_and_grads(flt.linear_cross_entropy, hidden, weight, bias, target, grad_output,
                          fused=True, chunk_rows=chunk_rows, **options)
    theirs = loss_and_grads(torch_linear_cross_entropy, hidden, weight, bias, target,
                            grad_output, **options)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("z_loss,softcap", EXTRAS)
def test_gradcheck(reduction, with_bias, z_loss, softcap):
    hidden, weight, bias, target = make_inputs(torch.float64, with_bias, n_rows=7)
    class_weight = torch.linspace(0.5, 2.0, N_CLASSES, dtype=torch.float64)
    leaves = [hidden.requires_grad_(), weight.requires_grad_()]
    if with_bias:
        leaves.append(bias.requires_grad_())

    def function(*tensors):
        b = tensors[2] if with_bias else None
        return flt.linear_cross_entropy(tensors[0], tensors[1], target, b,
                                        class_weight=class_weight, label_smoothing=0.1,
                                        z_loss=z_loss, softcap=softcap,
                                        reduction=reduction, chunk_rows=3)

    assert type(function(*leaves).grad_fn).__name__ == FUSED
    assert torch.autograd.gradcheck(function, leaves)
    if reduction == "mean" and with_bias and (z_loss == 0.0) == (softcap is None):
        # double backward goes through torch's own functions (once is enough)
        assert torch.autograd.gradgradcheck(function, leaves)


def test_only_the_needed_gradients():
    hidden, weight, bias, target = make_inputs()
    weight.requires_grad_()
    loss = flt.linear_cross_entropy(hidden, weight, target, bias)
    loss.backward()
    assert hidden.grad is None and bias.grad is None
    leaf = weight.detach().requires_grad_()
    expected = torch.autograd.grad(torch_linear_cross_entropy(hidden, leaf, target, bias),
                                   leaf)[0]
    torch.testing.assert_close(weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_without_grad_returns_a_plain_tensor():
    hidden, weight, bias, target = make_inputs()
    with torch.no_grad():
        loss = flt.linear_cross_entropy(hidden.requires_grad_(), weight, target, bias)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, torch_linear_cross_entropy(hidden.detach(), weight,
                                                                target, bias))


def test_module_owns_no_parameters():
    hidden, weight, bias, target = make_inputs()
    class_weight = torch.linspace(0.5, 2.0, N_CLASSES, dtype=torch.float64)
    module = flt.LinearCrossEntropyLoss(class_weight=class_weight, label_smoothing=0.1,
                                        reduction="sum", chunk_rows=4)
    assert list(module.parameters()) == []
    assert "class_weight" in module.state_dict()
    torch.testing.assert_close(
        module(hidden, weight, target, bias),
        torch_linear_cross_entropy(hidden, weight, target, bias, class_weight=class_weight,
                                   label_smoothing=0.1, reduction="sum"))
    # with a model's projection: the gradients reach the layer's parameters
    layer = torch.nn.Linear(N_FEATURES, N_CLASSES, dtype=torch.float64)
    flt.LinearCrossEntropyLoss()(hidden, layer.weight, target, layer.bias).backward()
    expected = torch.autograd.grad(
        torch_linear_cross_entropy(hidden, layer.weight, target, layer.bias),
        [layer.weight, layer.bias])
    torch.testing.assert_close(layer.weight.grad, expected[0])
    torch.testing.assert_close(layer.bias.grad, expected[1])
    # the z-loss and the softcap reach the function
    capped = flt.LinearCrossEntropyLoss(z_loss=0.01, softcap=2.5, chunk_rows=4)
    torch.testing.assert_close(capped(hidden, weight, target, bias),
                               torch_linear_cross_entropy(hidden, weight, target, bias,
                                                          z_loss=0.01, softcap=2.5))


def test_mean_over_nothing_is_torch_nan():
    hidden, weight, bias, target = make_inputs()
    target[:] = -100
    ours = loss_and_grads(flt.linear_cross_entropy, hidden, weight, bias, target, fused=False)
    theirs = loss_and_grads(torch_linear_cross_entropy, hidden, weight, bias, target)
    assert torch.isnan(ours[0]) and torch.isnan(theirs[0])
    for a, b in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_torch_errors_and_fallbacks():
    hidden, weight, bias, target = make_inputs()
    bad = target.clone()
    bad[3] = N_CLASSES
    with pytest.raises((IndexError, RuntimeError)):
        flt.linear_cross_entropy(hidden, weight, bad, bias)
    # float16 and mixed dtypes: torch's own result (or error)
    half = flt.linear_cross_entropy(hidden.float(), weight.float(), target, bias.float())
    torch.testing.assert_close(half, torch_linear_cross_entropy(hidden.float(), weight.float(),
                                                                target, bias.float()))
    with pytest.raises(RuntimeError):
        flt.linear_cross_entropy(hidden, weight.float(), target, bias)


def test_none_backward_with_nan_grad_output_follows_torch():
    hidden, weight, bias, target = make_inputs()
    grad_output = torch.ones(N_ROWS, dtype=torch.float64)
    grad_output[2] = float("nan")
    ours = loss_and_grads(flt.linear_cross_entropy, hidden, weight, bias, target, grad_output,
                          fused=True, reduction="none")
    theirs = loss_and_grads(torch_linear_cross_entropy, hidden, weight, bias, target,
                            grad_output, reduction="none")
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_bad_z_loss_and_softcap_raise():
    hidden, weight, bias, target = make_inputs()
    with pytest.raises(ValueError, match="z_loss"):
        flt.linear_cross_entropy(hidden, weight, target, bias, z_loss=-1e-4)
    with pytest.raises(ValueError, match="softcap"):
        flt.linear_cross_entropy(hidden, weight, target, bias, softcap=0.0)
    with pytest.raises(ValueError, match="softcap"):
        flt.LinearCrossEntropyLoss(softcap=-30.0)


def test_inputs_are_not_modified():
    hidden, weight, bias, target = make_inputs(torch.float32)
    copies = [t.clone() for t in (hidden, weight, bias, target)]
    loss_and_grads(flt.linear_cross_entropy, hidden, weight, bias, target, chunk_rows=4)
    for before, after in zip(copies, (hidden, weight, bias, target)):
        assert torch.equal(before, after)


def test_exported():
    assert {"linear_cross_entropy", "LinearCrossEntropyLoss"} <= set(flt.__all__)
    assert np.isfinite(float(flt.linear_cross_entropy(*make_inputs()[:2],
                                                      make_inputs()[3])))
