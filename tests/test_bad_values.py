"""Bad values inside otherwise well-formed arrays: a clear ValueError, every input untouched.

API.md's "Bad input" table: NaN or infinite sample, class or positive-class
weights (negative weights stay allowed, as in scikit-learn); binary
cross-entropy targets outside [0, 1] or NaN; ``out`` given with
``grad=False``.  The fast binary cross-entropy checks its targets inside the
kernel's own pass, and in a pass of their own only when the gradient
overwrites the logits.  The fast functions find a bad sample weight without a
pass of their own (it makes the kernel's total, or the "mean" denominator,
non-finite), except when the gradient overwrites the predictions: then they
check before writing.  Either way the error names the first bad position and
value, and the reference twin raises the same error.
"""
import numpy as np
import pytest

from cases import CASES, shape_for
from helpers import assert_unchanged, snapshot

BOTH = ["fast", "reference"]
REDUCTIONS = ["mean", "sum", "none"]


def inputs(case, dtype=np.float64):
    rng = np.random.default_rng(11)
    shape = shape_for(case, 9_000, 8)           # 72_000 elements: several chunks
    pred, target = case.make_inputs(rng, shape, dtype)
    return pred, target, rng.uniform(0.5, 2.0, shape[0])


def function(case, module):
    return case.fast if module == "fast" else case.reference


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_a_non_finite_sample_weight_is_named(case, bad, reduction, module):
    pred, target, weight = inputs(case)
    position = weight.size * 2 // 3 + 5         # in a later chunk, not the first
    weight[position] = bad
    before = snapshot(pred, target, weight)
    with pytest.raises(ValueError, match=rf"sample_weight\[{position}\] = {bad}"):
        function(case, module)(pred, target, sample_weight=weight, reduction=reduction)
    assert_unchanged(before, [pred, target, weight])


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_a_bad_sample_weight_is_found_before_an_in_place_gradient_is_written(case, module):
    pred, target, weight = inputs(case)
    weight[-1] = np.nan                          # the last row: written last
    before = snapshot(pred, target, weight)
    for reduction in REDUCTIONS:
        with pytest.raises(ValueError, match=r"sample_weight\[\d+\] = nan"):
            function(case, module)(pred, target, sample_weight=weight, reduction=reduction,
                                   out=pred)
        assert_unchanged(before, [pred, target, weight])


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_negative_and_zero_weights_stay_allowed(case):
    pred, target, weight = inputs(case)
    weight[::3] *= -1
    weight[1::7] = 0.0
    fast = case.fast(pred, target, sample_weight=weight, reduction="sum")
    slow = case.reference(pred, target, sample_weight=weight, reduction="sum")
    assert np.isfinite(fast.loss)
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-9)


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_class_weight_is_named(bad, module):
    case = next(c for c in CASES if c.name == "softmax_cross_entropy")
    pred, target, _ = inputs(case)
    class_weight = np.linspace(0.5, 2.0, pred.shape[1])
    class_weight[3] = bad
    with pytest.raises(ValueError, match=rf"class_weight\[3\] = {bad}"):
        function(case, module)(pred, target, class_weight=class_weight, out=pred)


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("pos_weight", [np.nan, -np.inf, np.array([1.0, np.nan, 2.0])],
                         ids=["nan", "-inf", "array"])
def test_a_non_finite_pos_weight_is_named(pos_weight, module):
    case = next(c for c in CASES if c.name == "binary_cross_entropy")
    rng = np.random.default_rng(3)
    pred, target = case.make_inputs(rng, (50, 3), np.float64)
    before = snapshot(pred, target)
    with pytest.raises(ValueError, match=r"pos_weight\[\d\] = (nan|-inf)"):
        function(case, module)(pred, target, pos_weight=pos_weight, out=pred)
    assert_unchanged(before, [pred, target])


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_out_with_grad_false_is_refused(case, module):
    pred, target, _ = inputs(case)
    out = np.full(pred.shape, 7.0)
    with pytest.raises(ValueError, match="grad=False"):
        function(case, module)(pred, target, grad=False, out=out)
    np.testing.assert_array_equal(out, 7.0)


BCE = next(c for c in CASES if c.name == "binary_cross_entropy")


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in_place"])
@pytest.mark.parametrize("bad", [2.0, -1e-7, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(72_000,), (9_000, 8)], ids=["1d", "2d"])
def test_a_binary_cross_entropy_target_outside_0_1_is_named(shape, bad, in_place, dtype,
                                                              module):
    rng = np.random.default_rng(5)
    logits, target = BCE.make_inputs(rng, shape, dtype)
    position = tuple(n * 2 // 3 + 1 for n in shape)     # in a later chunk
    target[position] = bad
    where = ", ".join(str(k) for k in position)
    before = snapshot(logits, target)
    call = function(BCE, module)
    for options in ({}, {"pos_weight": 2.0}, {"sample_weight": np.ones(shape[0])}):
        for reduction in REDUCTIONS:
            with pytest.raises(ValueError, match=rf"target\[{where}\] = {str(dtype(bad))}$"):
                call(logits, target, reduction=reduction, out=logits if in_place else None,
                     **options)
            assert_unchanged(before, [logits, target])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_targets_at_0_and_1_are_fine(dtype):
    rng = np.random.default_rng(6)
    logits, _ = BCE.make_inputs(rng, (70_000,), dtype)
    target = rng.choice(np.array([0.0, 1.0, 0.5]), size=70_000).astype(dtype)
    fast = BCE.fast(logits, target, out=logits.copy())
    slow = BCE.reference(logits, target)
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fastloss_torch_keeps_torchs_answer_for_targets_outside_0_1(dtype):
    """The checks are the NumPy API's: the drop-ins compute what torch computes."""
    torch = pytest.importorskip("torch")
    import fastloss.torch as flt
    dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=generator, dtype=dtype)
    target = torch.rand(300, 4, generator=generator, dtype=dtype)
    target[::7, 1] = 2.0
    target[::5, 2] = -0.5
    for reduction in REDUCTIONS:
        ours = x.clone().requires_grad_()
        theirs = x.clone().requires_grad_()
        got = flt.binary_cross_entropy_with_logits(ours, target, reduction=reduction)
        want = torch.nn.functional.binary_cross_entropy_with_logits(theirs, target,
                                                                    reduction=reduction)
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(ours.grad, theirs.grad)


PROBABILITY_LOSSES = ["softmax_cross_entropy", "softmax_binary_cross_entropy", "kl_divergence"]


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in_place"])
@pytest.mark.parametrize("bad", [-0.25, -1e-30, np.nan, np.inf])
@pytest.mark.parametrize("name", PROBABILITY_LOSSES)
def test_a_bad_probability_target_is_named(name, bad, in_place, dtype, module):
    import fastloss
    import fastloss.reference
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(9_000, 8)).astype(dtype)
    target = rng.dirichlet(np.ones(8), size=9_000).astype(dtype)
    target[6_001, 5] = bad                       # in a later chunk
    before = snapshot(logits, target)
    call = getattr(fastloss if module == "fast" else fastloss.reference, name)
    for reduction in REDUCTIONS:
        with pytest.raises(ValueError, match=rf"target\[6001, 5\] = {str(dtype(bad))}$"):
            call(logits, target, reduction=reduction, out=logits if in_place else None)
        assert_unchanged(before, [logits, target])


def test_fastloss_torch_keeps_torchs_answer_for_negative_probability_targets():
    torch = pytest.importorskip("torch")
    import fastloss.torch as flt
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=generator)
    target = torch.rand(200, 6, generator=generator)
    target[::9, 2] = -0.5
    for reduction in REDUCTIONS:
        ours = x.clone().requires_grad_()
        theirs = x.clone().requires_grad_()
        got = flt.cross_entropy(ours, target, reduction=reduction)
        want = torch.nn.functional.cross_entropy(theirs, target, reduction=reduction)
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize("module", BOTH)
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in_place"])
@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
def test_a_bad_hinge_target_leaves_the_inputs_untouched(name, in_place, module):
    case = next(c for c in CASES if c.name == name)
    rng = np.random.default_rng(9)
    scores, target = case.make_inputs(rng, (72_000,), np.float32)
    target[50_001] = 0.5
    before = snapshot(scores, target)
    out = scores if in_place else np.empty_like(scores)
    with pytest.raises(ValueError, match=r"target\[50001\] = 0.5"):
        function(case, module)(scores, target, out=out)
    assert_unchanged(before, [scores, target])
