"""The fused linear cross-entropy against torch's F.linear + F.cross_entropy, on CPU.

Usage::

    python -m bench.bench_linear_cross_entropy            # the two shapes below
    python -m bench.bench_linear_cross_entropy --quick    # small shapes, a smoke run

from the repository root.  For each shape (float32 hidden (N, D), weight
(V, D), bias (V,), int64 labels), the loss and its three gradients by

* ``numpy``: ``fastloss.linear_cross_entropy`` (the NumPy API);
* ``adapter``: ``fastloss.torch.linear_cross_entropy`` forward + backward;
* ``torch``: ``F.cross_entropy(F.linear(x, W, b), y)`` forward + backward;

it reports

* time: the median of interleaved rounds (numpy, adapter, torch, numpy, ...)
  in one process, with 1 thread (``torch.set_num_threads(1)``,
  ``n_threads=1``) and with all cores, and the ratios to torch's median;
* peak memory above the inputs and the returned gradients: for each
  implementation a fresh subprocess builds the inputs, warms up on a tiny
  problem, resets the kernel's high-water mark of its resident set
  (``/proc/self/clear_refs``) and runs the call once: VmHWM minus the
  resident set before the call minus the gradients' bytes.  For numpy also
  tracemalloc's peak (NumPy's own accounting; BLAS's internal buffers are
  invisible to it).  The target: 10% of the (N, V) float32 logits plus one
  weight-sized buffer;
* how the NumPy function's time splits between the three matrix products,
  the weight-gradient accumulation (through the scratch array, on the path
  without SciPy; SciPy's gemm accumulates in place) and the rest
  (the cross-entropy kernel, the bias and its sums): its chunk loop run with
  timed products;
* accuracy: the largest relative difference, max |fused - unfused| /
  max |unfused|, from the unfused float32 path (``softmax_cross_entropy``
  on the whole logits) and, at N / 8 rows, the float64 one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(4_096, 512, 32_000), (2_048, 512, 128_000)]
QUICK_SHAPES = [(512, 64, 4_000)]
IMPLEMENTATIONS = ["numpy", "adapter", "torch"]
MIB = 2**20


def make_numpy_inputs(n_rows, n_features, n_classes, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n_rows, n_features), dtype=np.float32).astype(dtype)
    scale = 1 / np.sqrt(n_features)     # logits of order 1, as a trained layer's
    weight = (scale * rng.standard_normal((n_classes, n_features), dtype=np.float32)) \
        .astype(dtype)
    bias = (0.1 * rng.standard_normal(n_classes, dtype=np.float32)).astype(dtype)
    labels = rng.integers(0, n_classes, n_rows)
    return hidden, weight, bias, labels


def make_call(implementation, arrays, n_threads):
    """A callable running one loss + gradients; returns the gradient arrays/tensors."""
    import fastloss

    hidden, weight, bias, labels = arrays
    if implementation == "numpy":
        def call():
            return fastloss.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                                 n_threads=n_threads)[1:]
        return call

    import torch
    import torch.nn.functional as F

    import fastloss.torch as flt

    x, w, b = (torch.from_numpy(a).requires_grad_(True) for a in (hidden, weight, bias))
    y = torch.from_numpy(labels)

    def loss_fn(x, w, y, b):
        if implementation == "adapter":
            return flt.linear_cross_entropy(x, w, y, b)
        return F.cross_entropy(F.linear(x, w, b), y)

    def call():
        for t in (x, w, b):
            t.grad = None
        loss_fn(x, w, y, b).backward()
        return x.grad, w.grad, b.grad
    return call


def set_threads(n_threads):
    """n_threads for the NumPy API (None: defaults) after setting torch's count."""
    import torch
    torch.set_num_threads(n_threads or os.cpu_count())
    return n_threads


# --- peak memory, in a fresh process per implementation -----------------------------

def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_worker(implementation, n_rows, n_features, n_classes):
    """Print the peak resident memory of one call above inputs and gradients, as JSON."""
    set_threads(None)
    make_call(implementation, make_numpy_inputs(64, 16, 100), None)()     # warm up
    arrays = make_numpy_inputs(n_rows, n_features, n_classes)
    call = make_call(implementation, arrays, None)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")                # reset VmHWM to the current resident set
    before = _status_bytes("VmRSS")
    grads = call()
    peak = _status_bytes("VmHWM")
    returned = sum(np.asarray(g.detach() if hasattr(g, "detach") else g).nbytes for g in grads)
    print(json.dumps({"peak_rss_above": peak - before - returned}))


def peak_rss_above(implementation, shape):
    command = [sys.executable, "-m", "bench.bench_linear_cross_entropy", "--memory-worker",
               implementation, *map(str, shape)]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])["peak_rss_above"]


def tracemalloc_peak_above(arrays):
    call = make_call("numpy", arrays, None)
    call()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        grads = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before - sum(g.nbytes for g in grads)


# --- time -----------------------------------------------------------------------------

def interleaved_times(arrays, n_threads, rounds):
    """Median seconds of each implementation, rounds interleaved."""
    calls = {name: make_call(name, arrays, n_threads) for name in IMPLEMENTATIONS}
    for call in calls.values():
        call()                          # warm up
    times = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def time_split(arrays, n_threads):
    """Seconds of one fastloss.linear_cross_entropy call (default chunks): in the matrix
    products, in accumulating grad_weight through the scratch (NumPy's path only: SciPy's
    gemm accumulates in place), and in the rest (the cross-entropy kernel, the bias and
    its sums), by timing the products of the real chunk loop."""
    from fastloss._linear_cross_entropy import make_products, run_chunks
    from fastloss._linear_validation import prepare_linear

    clock = time.perf_counter
    steps = {"products": 0.0, "accumulate": 0.0}
    hidden, weight, bias, labels = arrays
    prep = prepare_linear(hidden, weight, labels, bias, None, None, 0.0, 0.0, None, None,
                          "mean", True, None, n_threads)
    products = make_products(prep.weight, prep.n_threads)

    class TimedProducts(type(products)):
        def logits(self, h_chunk, out):
            start = clock()
            super().logits(h_chunk, out)
            steps["products"] += clock() - start

        def grad_hidden(self, g, out):
            start = clock()
            super().grad_hidden(g, out)
            steps["products"] += clock() - start

        def add_grad_weight(self, g, h_chunk, grad_weight, first):
            start = clock()
            super().add_grad_weight(g, h_chunk, grad_weight, first)
            steps["products"] += clock() - start    # the accumulation taken out below

        def accumulate(self, total, part):
            start = clock()
            super().accumulate(total, part)
            steps["accumulate"] += clock() - start

    products.__class__ = TimedProducts
    steps["path"] = type(products).__mro__[1].__name__
    start = clock()
    run_chunks(prep, products)
    steps["total"] = clock() - start
    steps["products"] -= steps["accumulate"]
    steps["kernel and bias"] = steps["total"] - steps["products"] - steps["accumulate"]
    return steps


# --- accuracy --------------------------------------------------------------------------

def relative_difference(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def unfused(arrays):
    import fastloss
    hidden, weight, bias, labels = arrays
    logits = hidden @ weight.T
    logits += bias
    loss, g = fastloss.softmax_cross_entropy(logits, labels, out=logits)
    grad_bias = np.sum(g, axis=0, dtype=np.float64).astype(g.dtype)
    return loss, g @ weight, g.T @ hidden, grad_bias


def accuracy(shape):
    import fastloss
    result = {}
    for dtype, n_rows in ((np.float32, shape[0]), (np.float64, max(shape[0] // 8, 1))):
        arrays = make_numpy_inputs(n_rows, shape[1], shape[2], dtype)
        hidden, weight, bias, labels = arrays
        fused = fastloss.linear_cross_entropy(hidden, weight, labels, bias=bias)
        expected = unfused(arrays)
        result[np.dtype(dtype).name] = {
            name: relative_difference(a, e)
            for name, a, e in zip(("loss", "grad_hidden", "grad_weight", "grad_bias"), fused,
                                  expected)}
    return result


# --- the report ------------------------------------------------------------------------

def run_case(shape, rounds):
    from fastloss._linear_cross_entropy import default_chunk_rows

    n_rows, n_features, n_classes = shape
    arrays = make_numpy_inputs(*shape)
    logits_bytes = n_rows * n_classes * 4
    weight_bytes = n_classes * n_features * 4
    case = {"shape": {"N": n_rows, "D": n_features, "V": n_classes},
            "chunk_rows": default_chunk_rows(n_rows, n_classes, n_features, 4),
            "logits_MiB": logits_bytes / MIB,
            "target_MiB": (0.1 * logits_bytes + weight_bytes) / MIB,
            "memory_MiB": {"numpy_tracemalloc": tracemalloc_peak_above(arrays) / MIB},
            "seconds": {}, "ratio_to_torch": {}, "split": {}}
    for name in IMPLEMENTATIONS:
        case["memory_MiB"][f"{name}_rss"] = peak_rss_above(name, shape) / MIB
    for label, n_threads in (("1 thread", 1), ("all threads", None)):
        set_threads(n_threads)
        medians = interleaved_times(arrays, n_threads, rounds)
        case["seconds"][label] = medians
        case["ratio_to_torch"][label] = {name: medians[name] / medians["torch"]
                                         for name in IMPLEMENTATIONS}
        case["split"][label] = time_split(arrays, n_threads)
    del arrays
    case["accuracy"] = accuracy(shape)
    return case


def markdown(report):
    lines = [f"Machine: {report['machine']}; {report['cpu_count']} cores; "
             f"numpy {report['numpy']}, torch {report['torch']}.", ""]
    for case in report["cases"]:
        s = case["shape"]
        lines += [f"### N = {s['N']:_}, D = {s['D']}, V = {s['V']:_} float32 "
                  f"(chunk_rows = {case['chunk_rows']})", "",
                  "| threads | numpy s | adapter s | torch s | numpy / torch | "
                  "adapter / torch |", "| --- | --- | --- | --- | --- | --- |"]
        for label, medians in case["seconds"].items():
            ratio = case["ratio_to_torch"][label]
            lines.append(f"| {label} | {medians['numpy']:.3f} | {medians['adapter']:.3f} | "
                         f"{medians['torch']:.3f} | {ratio['numpy']:.2f} | "
                         f"{ratio['adapter']:.2f} |")
        memory = case["memory_MiB"]
        lines += ["", f"Peak memory above inputs and gradients (MiB): numpy "
                  f"{memory['numpy_tracemalloc']:.1f} (tracemalloc), "
                  f"{memory['numpy_rss']:.1f} (RSS); adapter {memory['adapter_rss']:.1f} "
                  f"(RSS); torch {memory['torch_rss']:.1f} (RSS).  Target "
                  f"{case['target_MiB']:.1f} (10% of the {case['logits_MiB']:.0f} MiB "
                  f"logits + one weight).", ""]
        for label, steps in case["split"].items():
            total = steps["total"]
            parts = ", ".join(f"{name} {100 * steps[name] / total:.0f}%"
                              for name in ("products", "kernel and bias", "accumulate"))
            lines.append(f"Split of the NumPy function's {total:.3f} s ({label}, "
                         f"{steps['path']}): {parts}.")
        lines.append("")
        for dtype, diffs in case["accuracy"].items():
            parts = ", ".join(f"{name} {value:.1e}" for name, value in diffs.items())
            lines.append(f"Largest relative difference from the unfused {dtype} path: {parts}.")
        lines.append("")
    return "\n".join(lines)


def machine_name():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                        help="directory of linear_cross_entropy[_quick].{json,md}")
    parser.add_argument("--memory-worker", nargs=4, metavar=("IMPL", "N", "D", "V"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        name, *shape = args.memory_worker
        memory_worker(name, *map(int, shape))
        return
    import torch
    shapes = QUICK_SHAPES if args.quick else SHAPES
    rounds = 1 if args.quick else args.rounds
    report = {"machine": machine_name(), "cpu_count": os.cpu_count(),
              "numpy": np.__version__, "torch": torch.__version__, "rounds": rounds,
              "cases": [run_case(shape, rounds) for shape in shapes]}
    text = markdown(report)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "linear_cross_entropy" + ("_quick" if args.quick else ""))
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
