"""Softmax cross-entropy: fastloss against the floor, its NumPy reference and the peers.

Run with ``python -m pytest bench/test_bench_multiclass.py``.  Each group is
one shape of logits with integer labels, "mean" reduction and the gradient.
The floor is ``np.copyto(g, logits)``: read N*C values, write N*C values.
The big shapes are timed over a few rounds only, so the file runs in minutes.
"""
import numpy as np
import pytest

from bench import cases
from bench.common import inputs, make_callable, run_benchmark

SHAPES = [(1_000_000, 10), (65_536, 1_000), (2_048, 32_768)]
IMPLEMENTATIONS = ["floor", "fastloss", "reference", "torch", "jax", "sklearn"]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
def test_softmax_cross_entropy(benchmark, shape, dtype, implementation):
    benchmark.group = f"softmax_cross_entropy {shape[0]}x{shape[1]} {dtype}"
    call = make_callable(implementation, "softmax_cross_entropy",
                         inputs("softmax_cross_entropy", shape, np.dtype(dtype)))
    run_benchmark(benchmark, call)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_softmax_cross_entropy_threads(benchmark, n_threads):
    """Scaling across cores: compare the two rows of this group."""
    benchmark.group = "softmax_cross_entropy 65536x1000 float32 threads"
    data = inputs("softmax_cross_entropy", (65_536, 1_000), np.dtype("float32"))
    run_benchmark(benchmark, cases.make_fastloss("softmax_cross_entropy", data, n_threads))


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
def test_softmax_cross_entropy_without_gradient(benchmark, shape):
    """grad=False: compare with the fastloss row of the float32 group of this shape."""
    benchmark.group = f"softmax_cross_entropy {shape[0]}x{shape[1]} float32"
    data = inputs("softmax_cross_entropy", shape, np.dtype("float32"))
    run_benchmark(benchmark, cases.make_fastloss("softmax_cross_entropy", data, 1, grad=False))
