"""The next-token example in its quick form: the fused and unfused losses agree, it learns,
and the fused step's peak memory is a fraction of the unfused one's."""
import pytest

from fastloss import _dispatch
from helpers import load_example

torch = pytest.importorskip("torch")


def test_quick_example_agrees_learns_and_saves_memory():
    example = load_example("linear_cross_entropy_lm.py")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)        # small matrices: threads only add overhead
    try:
        summary = example.run(quick=True, verbose=False)
    finally:
        torch.set_num_threads(previous)
    losses = summary["losses"]
    assert len(losses) == 30
    assert summary["max_difference"] <= example.TOLERANCE
    # It learns: the loss falls well below a uniform guess, also on held-out text.
    assert losses[-5:].mean() < 0.8 * losses[:5].mean()
    assert summary["test_loss"] < 0.8 * summary["uniform_loss"]
    peaks = summary["peak_bytes"]
    # (under AddressSanitizer, its quarantine and shadow memory make the
    # resident set say nothing about the program's own arrays)
    if None not in peaks.values() and not _dispatch.elementwise_kernels.BUILD["asan"]:
        # The unfused step holds logits, log-softmax and gradient (3 x the logits);
        # the fused one a fraction of one.
        assert peaks["unfused"] >= 2 * summary["logits_bytes"]
        assert peaks["fused"] < 0.5 * summary["logits_bytes"]
