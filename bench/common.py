"""Helpers of the pytest-benchmark suite."""
import functools
import time

import pytest

from bench import cases

N_THREADS = 1


@functools.lru_cache(maxsize=1)
def inputs(kernel, shape, dtype):
    """Inputs of the last case only: a 1e7-element case holds hundreds of MB."""
    return cases.make_inputs(kernel, shape, dtype)


def make_callable(implementation, kernel, data):
    """The timed call of one implementation (the floor, fastloss or a peer)."""
    if implementation == "floor":
        return cases.make_floor(kernel, data)
    if implementation == "fastloss":
        return cases.make_fastloss(kernel, data, N_THREADS)
    try:
        return cases.PEERS[implementation](kernel, data, N_THREADS)
    except cases.Unavailable as exc:
        pytest.skip(str(exc))


def run_benchmark(benchmark, call):
    """A few rounds only (one when a call takes seconds), so the suite runs in minutes."""
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    rounds = 7 if once < 0.05 else 3 if once < 1.0 else 1
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
