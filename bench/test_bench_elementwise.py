"""Elementwise losses: fastloss against the floor, its NumPy reference and the peers.

Run with ``python -m pytest bench/test_bench_elementwise.py``; group the
table with ``--benchmark-group-by=param:kernel,param:n,param:dtype``.
The floor is ``np.subtract(pred, target, out=g)``: read two arrays, write one.
"""
import numpy as np
import pytest

from bench import cases
from bench.common import inputs, make_callable, run_benchmark

IMPLEMENTATIONS = ["floor", "fastloss", "reference", "torch", "jax", "sklearn"]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1_000_000, 10_000_000])
@pytest.mark.parametrize("kernel", cases.ELEMENTWISE)
def test_elementwise(benchmark, kernel, n, dtype, implementation):
    benchmark.group = f"{kernel} N={n:.0e} {dtype}"
    call = make_callable(implementation, kernel, inputs(kernel, (n,), np.dtype(dtype)))
    run_benchmark(benchmark, call)


@pytest.mark.parametrize("kernel", cases.ELEMENTWISE)
def test_elementwise_without_gradient(benchmark, kernel):
    """grad=False skips every gradient operation: compare with the grad=True row."""
    benchmark.group = f"{kernel} N=1e+07 float32"
    data = inputs(kernel, (10_000_000,), np.dtype("float32"))
    run_benchmark(benchmark, cases.make_fastloss(kernel, data, 1, grad=False))
