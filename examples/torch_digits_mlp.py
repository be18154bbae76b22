"""Train a small MLP on scikit-learn's digits with fastloss.torch.cross_entropy.

The same network is trained twice from the same seed, on the same batches:
once with ``fastloss.torch.cross_entropy`` and once with torch's own
``torch.nn.functional.cross_entropy``.  The two loss curves (one value per
step) must agree to 1e-5; the script prints both, the held-out accuracy and
the time per epoch of each, and exits with status 1 if they disagree.

Usage::

    python examples/torch_digits_mlp.py [--epochs 20] [--dtype float32]

The digits data (1797 8x8 images, 10 classes) ships with scikit-learn: no
download.  At this size the loss is a small part of each step (the matrix
products dominate), so the times per epoch are close; see
bench/bench_torch_backend.py for the loss alone at large sizes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import fastloss.torch as flt

TOLERANCE = 1e-5


def load_data(dtype, seed=0):
    """Digits scaled to [0, 1], split 80/20 by a fixed permutation."""
    digits = load_digits()
    features = torch.from_numpy(digits.data / 16.0).to(dtype)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(labels))
    train, test = order[:n_train], order[n_train:]
    return features[train], labels[train], features[test], labels[test]


def train(loss_fn, data, epochs, dtype, seed=0, batch_size=64, lr=0.1):
    """Train a 64-128-10 MLP with SGD + momentum; return per-step losses and epoch times."""
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10)).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    batches = torch.Generator().manual_seed(seed + 1)
    losses, epoch_times = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y_train), generator=batches)
        for first in range(0, len(order), batch_size):
            index = order[first:first + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        epoch_times.append(time.perf_counter() - start)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).double().mean().item()
    return np.array(losses), epoch_times, accuracy


def run(epochs=20, dtype=torch.float32, verbose=True):
    """Train with both losses; return a dict of the curves, times and accuracies."""
    data = load_data(dtype)
    results = {}
    for name, loss_fn in (("fastloss", flt.cross_entropy), ("torch", F.cross_entropy)):
        results[name] = train(loss_fn, data, epochs, dtype)
    fast_losses, fast_times, fast_accuracy = results["fastloss"]
    torch_losses, torch_times, torch_accuracy = results["torch"]
    max_difference = float(np.max(np.abs(fast_losses - torch_losses)))
    summary = {
        "fastloss_losses": fast_losses, "torch_losses": torch_losses,
        "max_difference": max_difference,
        "fastloss_epoch_s": statistics.median(fast_times),
        "torch_epoch_s": statistics.median(torch_times),
        "fastloss_accuracy": fast_accuracy, "torch_accuracy": torch_accuracy,
    }
    if verbose:
        steps_per_epoch = len(fast_losses) // epochs
        print(f"{'epoch':>5} {'fastloss loss':>14} {'torch loss':>14}")
        for epoch in range(epochs):
            last = (epoch + 1) * steps_per_epoch - 1
            print(f"{epoch + 1:>5} {fast_losses[last]:>14.8f} {torch_losses[last]:>14.8f}")
        print(f"max |difference| over {len(fast_losses)} steps: {max_difference:.2e} "
              f"(tolerance {TOLERANCE:g})")
        print(f"held-out accuracy: fastloss {fast_accuracy:.4f}, torch {torch_accuracy:.4f}")
        print(f"median time per epoch: fastloss {summary['fastloss_epoch_s'] * 1e3:.1f} ms, "
              f"torch {summary['torch_epoch_s'] * 1e3:.1f} ms")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args(argv)
    summary = run(args.epochs, getattr(torch, args.dtype))
    return 0 if summary["max_difference"] <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
