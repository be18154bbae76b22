"""Determinism and threads: bit-identical results for every run and thread count,
concurrent calls from Python threads, and the GIL released while a kernel runs.

Every loss comes from the registry in cases.py.
"""
import threading

import numpy as np
import pytest

from cases import CASES, UTILITIES, shape_for, variant_ids, variants


def _large_inputs(case, dtype, seed=0):
    """Inputs of ~200_000 elements: several chunks, so several threads share the work."""
    rng = np.random.default_rng(seed)
    shape = shape_for(case, 20_000, 10)
    pred, target = case.make_inputs(rng, shape, dtype)
    weight = rng.uniform(0.0, 2.0, size=shape[0])
    return pred, target, weight


def _bits(result):
    """Every bit of a LossGrad, for exact comparison (NaN payloads included)."""
    loss = np.asarray(result.loss, dtype=np.float64 if np.ndim(result.loss) == 0 else None)
    grad = b"" if result.grad is None else result.grad.tobytes()
    return loss.tobytes(), grad


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case,option", variants(), ids=variant_ids())
def test_bit_identical_for_every_run_and_thread_count(case, option, dtype, reduction):
    pred, target, weight = _large_inputs(case, dtype)
    options = case.options[option](pred.shape)

    def run(n_threads):
        return _bits(case.fast(pred, target, sample_weight=weight, reduction=reduction,
                               n_threads=n_threads, **options))

    first = run(1)
    assert run(1) == first                       # run to run
    for n_threads in (2, 3, 4, None):
        assert run(n_threads) == first, f"n_threads={n_threads}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("utility", UTILITIES, ids=repr)
def test_row_utilities_bit_identical_for_every_thread_count(utility, dtype):
    x = np.random.default_rng(1).normal(scale=5.0, size=(20_000, 10)).astype(dtype)
    first = utility.fast(x, n_threads=1).tobytes()
    for n_threads in (1, 2, 3, 4, None):
        assert utility.fast(x, n_threads=n_threads).tobytes() == first


def test_eight_python_threads_match_sequential_calls():
    """Eight threads call every loss at once on shared inputs; results are bit-identical."""
    calls = []
    for case, option in variants():
        pred, target, weight = _large_inputs(case, np.float32, seed=2)
        pred, target = pred[:4000], target[:4000]       # ~40_000 elements: quick, 2 chunks
        options = case.options[option](pred.shape)
        for reduction in ("mean", "none"):
            calls.append((case.fast, pred, target, dict(sample_weight=weight[:4000],
                                                        reduction=reduction, **options)))
    for utility in UTILITIES:
        x = np.random.default_rng(3).normal(size=(4000, 10)).astype(np.float32)
        calls.append((utility.fast, x, None, {}))

    def call(i, n_threads):
        function, pred, target, kwargs = calls[i]
        if target is None:
            return function(pred, n_threads=n_threads).tobytes()
        return _bits(function(pred, target, n_threads=n_threads, **kwargs))

    expected = [call(i, 1) for i in range(len(calls))]
    results = {}
    errors = []
    barrier = threading.Barrier(8)

    def worker(thread_index):
        try:
            barrier.wait()
            for repeat in range(2):
                # Each thread walks the calls from a different start, with its own
                # OpenMP thread count, so that different kernels overlap.
                for k in range(len(calls)):
                    i = (k + 5 * thread_index) % len(calls)
                    results[(thread_index, repeat, i)] = call(i, 1 + thread_index % 3)
        except BaseException as error:          # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 8 * 2 * len(calls)
    for (thread_index, repeat, i), bits in results.items():
        assert bits == expected[i], f"thread {thread_index}, call {i}"


def _gil_cases():
    return [(case, option) for case, option in variants() if option == "default"]


@pytest.mark.parametrize("case", [c for c, _ in _gil_cases()], ids=repr)
def test_another_thread_runs_while_a_kernel_runs(case):
    """Proof that the kernel releases the GIL, without timing thresholds.

    The kernel writes its gradient into ``out`` (pre-filled with NaN) front to
    back on one thread.  Another Python thread, counting its loop iterations,
    looks at the first and last elements: seeing the first written and the
    last not yet written means Python code ran in the middle of the kernel.
    With the GIL held throughout, it could only ever see none or all written.
    """
    rng = np.random.default_rng(4)
    shape = shape_for(case, 400_000, 10)
    pred, target = case.make_inputs(rng, shape, np.float64)
    out = np.empty(shape)
    for attempt in range(10):
        out.fill(np.nan)
        flat = out.reshape(-1)
        state = {"done": False, "iterations": 0, "seen_mid_kernel": 0}
        started = threading.Event()

        def observe():
            started.set()
            while not state["done"]:
                state["iterations"] += 1
                if not np.isnan(flat[0]) and np.isnan(flat[-1]):
                    state["seen_mid_kernel"] += 1

        observer = threading.Thread(target=observe)
        observer.start()
        started.wait()
        try:
            case.fast(pred, target, reduction="sum", out=out, n_threads=1)
        finally:
            state["done"] = True
            observer.join()
        assert not np.isnan(flat[-1])         # the kernel did finish writing
        if state["seen_mid_kernel"] > 0:
            break
    assert state["seen_mid_kernel"] > 0, (
        f"the other thread ran {state['iterations']} iterations but never during the kernel")
