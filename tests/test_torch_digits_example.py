"""The digits MLP example: fastloss.torch and torch train to the same loss curve."""
import pytest

from helpers import load_example

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")


@pytest.fixture
def example():
    return load_example("torch_digits_mlp.py")


def test_digits_mlp_loss_curves_match(example):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny matrices: threads only add overhead
    try:
        summary = example.run(epochs=2, verbose=False)
    finally:
        torch.set_num_threads(previous)
    assert len(summary["fastloss_losses"]) == len(summary["torch_losses"]) == 46
    assert summary["max_difference"] <= example.TOLERANCE
    # It really learns: the loss falls and held-out digits are mostly right.
    losses = summary["fastloss_losses"]
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()
    assert summary["fastloss_accuracy"] > 0.8
    assert abs(summary["fastloss_accuracy"] - summary["torch_accuracy"]) <= 0.01
