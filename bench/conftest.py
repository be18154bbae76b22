"""pytest-benchmark set-up: peers run on one thread, like the kernels."""
import pytest

from bench import cases

# XLA reads its thread flags when jax is first imported.
cases.limit_jax_threads(1)


def pytest_configure(config):
    pytest.importorskip("pytest_benchmark")
