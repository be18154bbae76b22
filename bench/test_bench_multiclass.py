"""Softmax cross-entropy: the fused kernel against its NumPy reference.

Run with ``python -m pytest bench/test_bench_multiclass.py``.  Each group is
one shape of float32 logits with integer labels, "mean" reduction and the
gradient; compare the medians of a group.  The big shapes are timed over a
few rounds only, so the file runs in a few minutes.
"""
import functools
import time

import numpy as np
import pytest

import fastloss
import fastloss.reference

pytest.importorskip("pytest_benchmark")

SHAPES = [(1_000_000, 10), (65_536, 1_000), (2_048, 32_768)]

IMPLEMENTATIONS = {
    "fastloss-1-thread": lambda x, y: fastloss.softmax_cross_entropy(x, y, n_threads=1),
    "fastloss": lambda x, y: fastloss.softmax_cross_entropy(x, y),
    "reference": lambda x, y: fastloss.reference.softmax_cross_entropy(x, y),
}


@functools.lru_cache(maxsize=1)
def inputs(shape):
    """float32 logits and labels of one shape (only the last shape is kept)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    return logits, labels


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
def test_softmax_cross_entropy(benchmark, shape, implementation):
    benchmark.group = f"softmax_cross_entropy {shape[0]}x{shape[1]} float32"
    logits, labels = inputs(shape)
    function = IMPLEMENTATIONS[implementation]
    start = time.perf_counter()
    function(logits, labels)                  # also a warm-up
    once = time.perf_counter() - start
    rounds = 7 if once < 0.1 else 3 if once < 1.0 else 1
    benchmark.pedantic(function, args=(logits, labels), rounds=rounds, iterations=1)
