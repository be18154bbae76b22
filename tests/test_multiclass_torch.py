"""PyTorch parity of the multiclass losses: values, and gradients through autograd."""
import itertools

import numpy as np
import pytest

import fastloss
import fastloss.reference as reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

N_ROWS, N_CLASSES = 64, 7
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
MODULES = pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def torch_loss_and_grad(function, logits, *args, **kwargs):
    """torch's loss and the gradient of its sum with respect to the logits."""
    x = torch.tensor(logits, requires_grad=True)
    loss = function(x, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach().numpy(), grad.numpy()


def assert_matches(ours, theirs, dtype):
    np.testing.assert_allclose(ours.loss, theirs[0], **TOLERANCE[dtype])
    np.testing.assert_allclose(ours.grad, theirs[1], **TOLERANCE[dtype])


def inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((N_ROWS, N_CLASSES))).astype(dtype)
    labels = rng.integers(0, N_CLASSES, N_ROWS)
    probabilities = rng.dirichlet(np.ones(N_CLASSES), N_ROWS).astype(dtype)
    class_weight = np.linspace(0.25, 2.0, N_CLASSES).astype(dtype)
    return logits, labels, probabilities, class_weight


# torch supports ignore_index with class labels only (see the refusal test below).
CROSS_ENTROPY_GRID = [
    case for case in itertools.product(
        [False, True],                   # class weights
        [None, 3, -100],                 # ignore_index
        [0.0, 0.3],                      # label smoothing
        ["labels", "probabilities"],
        ["mean", "sum", "none"])
    if case[3] == "labels" or case[1] is None
]


@MODULES
@DTYPES
@pytest.mark.parametrize("weighted,ignore_index,label_smoothing,target_kind,reduction",
                         CROSS_ENTROPY_GRID)
def test_cross_entropy_matches_torch(module, dtype, weighted, ignore_index, label_smoothing,
                                     target_kind, reduction):
    logits, labels, probabilities, class_weight = inputs(dtype)
    if ignore_index is not None:
        labels[::4] = ignore_index
    target = labels if target_kind == "labels" else probabilities
    weight = class_weight if weighted else None
    theirs = torch_loss_and_grad(
        F.cross_entropy, logits, torch.tensor(target),
        weight=None if weight is None else torch.tensor(weight),
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing, reduction=reduction)
    ours = module.softmax_cross_entropy(logits, target, class_weight=weight,
                                        ignore_index=ignore_index,
                                        label_smoothing=label_smoothing, reduction=reduction)
    assert_matches(ours, theirs, dtype)


@MODULES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_targets_with_ignore_index_are_refused_like_torch(module, reduction):
    logits, _, probabilities, _ = inputs(np.float64)
    with pytest.raises(RuntimeError):
        F.cross_entropy(torch.tensor(logits), torch.tensor(probabilities), ignore_index=0,
                        reduction=reduction)
    with pytest.raises(ValueError, match="ignore_index"):
        module.softmax_cross_entropy(logits, probabilities, ignore_index=0, reduction=reduction)


@MODULES
def test_mean_over_ignored_rows_is_zero_where_torch_gives_nan(module):
    logits, labels, _, _ = inputs(np.float64)
    labels[:] = 2
    theirs = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), ignore_index=2)
    assert torch.isnan(theirs)
    loss, grad = module.softmax_cross_entropy(logits, labels, ignore_index=2)
    assert loss == 0.0 and np.all(grad == 0)


@MODULES
@DTYPES
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sample_weight_is_a_torch_none_reduction_reweighted(module, dtype, weighted,
                                                            reduction):
    """sample_weight s: "sum" is sum_i s_i l_i; "mean" divides by sum_i s_i w_{y_i}."""
    logits, labels, _, class_weight = inputs(dtype)
    sample_weight = np.random.default_rng(1).uniform(0, 2, N_ROWS)
    weight = torch.tensor(class_weight) if weighted else None
    x = torch.tensor(logits, requires_grad=True)
    per_row = F.cross_entropy(x, torch.tensor(labels), weight=weight, reduction="none",
                              label_smoothing=0.1)
    s = torch.tensor(sample_weight, dtype=x.dtype)
    total = (s * per_row).sum()
    if reduction == "mean":
        w_y = weight[labels] if weighted else torch.ones(N_ROWS, dtype=x.dtype)
        total = total / (s * w_y).sum()
    (grad,) = torch.autograd.grad(total, x)
    ours = module.softmax_cross_entropy(logits, labels, class_weight=class_weight if weighted
                                        else None, label_smoothing=0.1,
                                        sample_weight=sample_weight, reduction=reduction)
    assert_matches(ours, (total.detach().numpy(), grad.numpy()), dtype)


@MODULES
@DTYPES
@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weston_watkins_hinge_is_torch_multi_margin_loss_times_classes(module, dtype, power,
                                                                      margin, reduction):
    logits, labels, _, _ = inputs(dtype)
    loss, grad = torch_loss_and_grad(F.multi_margin_loss, logits, torch.tensor(labels),
                                     p=power, margin=margin, reduction=reduction)
    ours = module.multiclass_hinge(logits, labels, margin=margin, kind="weston_watkins",
                                   squared=power == 2, reduction=reduction)
    assert_matches(ours, (N_CLASSES * loss, N_CLASSES * grad), dtype)


@MODULES
@DTYPES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_kl_divergence_matches_torch_kl_div_batchmean(module, dtype, reduction):
    logits, _, probabilities, _ = inputs(dtype)
    probabilities[::5, 2] = 0.0                  # 0 log 0 = 0
    torch_reduction = {"mean": "batchmean", "sum": "sum", "none": "none"}[reduction]

    def kl(x, t):
        per_element = F.kl_div(F.log_softmax(x, dim=1), t, reduction=torch_reduction)
        return per_element.sum(dim=1) if reduction == "none" else per_element

    theirs = torch_loss_and_grad(kl, logits, torch.tensor(probabilities))
    ours = module.kl_divergence(logits, probabilities, reduction=reduction)
    assert_matches(ours, theirs, dtype)


@MODULES
@DTYPES
def test_softmax_binary_cross_entropy_matches_autograd(module, dtype):
    """The definition -sum_c [t_c log p_c + (1 - t_c) log(1 - p_c)], differentiated by torch."""
    logits, labels, probabilities, _ = inputs(dtype)

    def variant(x, t):
        p = torch.softmax(x.double(), dim=1)
        return -(t * torch.log(p) + (1 - t) * torch.log1p(-p)).sum(dim=1).to(x.dtype)

    onehot = np.eye(N_CLASSES, dtype=dtype)[labels]
    for target, torch_target in [(labels, onehot), (probabilities, probabilities)]:
        theirs = torch_loss_and_grad(variant, logits, torch.tensor(torch_target))
        ours = module.softmax_binary_cross_entropy(logits, target, reduction="none")
        assert_matches(ours, theirs, dtype)


@MODULES
@DTYPES
def test_row_utilities_match_torch(module, dtype):
    logits = inputs(dtype)[0] * 100
    x = torch.tensor(logits)
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(module.logsumexp(logits), torch.logsumexp(x, dim=1).numpy(),
                               rtol=tolerance["rtol"], atol=100 * tolerance["atol"])
    np.testing.assert_allclose(module.softmax(logits), torch.softmax(x, dim=1).numpy(),
                               **tolerance)
    np.testing.assert_allclose(module.log_softmax(logits), torch.log_softmax(x, dim=1).numpy(),
                               rtol=tolerance["rtol"], atol=100 * tolerance["atol"])
