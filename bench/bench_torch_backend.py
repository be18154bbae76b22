"""Forward + backward of fastloss.torch.cross_entropy against torch's own, on CPU.

Usage::

    python -m bench.bench_torch_backend            # the three shapes below
    python -m bench.bench_torch_backend --quick    # small shapes, a smoke run

from the repository root (or with fastloss installed).

For each shape (float32 logits, int64 labels), thread count (1 and all
cores) and implementation, a fresh subprocess builds the inputs and then

* measures peak memory: the process's maximum resident set size after one
  forward + backward minus the one before it (``resource.getrusage``; torch's
  allocator is invisible to tracemalloc).  It counts every buffer the loss
  allocates: torch's log-softmax and gradient, fastloss's one gradient;
* times ``loss = f(logits, labels); loss.backward()`` (the gradient lands in
  ``logits.grad``, cleared between runs), and reports the median of the runs.

Both implementations run side by side in one invocation and the table gives
the ratio torch / fastloss of the medians (above 1: fastloss is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(1_000_000, 10), (65_536, 1_000), (2_048, 32_768)]
QUICK_SHAPES = [(10_000, 10), (2_048, 100)]
IMPLEMENTATIONS = ["torch", "fastloss"]


def max_rss_bytes():
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(implementation, n_rows, n_classes, n_threads, min_time):
    """Run one case in this process and print its figures as JSON."""
    import torch
    import torch.nn.functional as F

    import fastloss.torch as flt

    torch.set_num_threads(n_threads)
    loss_fn = flt.cross_entropy if implementation == "fastloss" else F.cross_entropy
    generator = torch.Generator().manual_seed(0)
    # In place, so that no temporary raises the high-water mark before the loss.
    logits = torch.randn(n_rows, n_classes, generator=generator).mul_(3).requires_grad_(True)
    labels = torch.randint(0, n_classes, (n_rows,), generator=generator)

    before = max_rss_bytes()
    loss_fn(logits, labels).backward()
    peak = max_rss_bytes() - before

    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < 50):
        logits.grad = None
        t0 = time.perf_counter()
        loss_fn(logits, labels).backward()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": statistics.median(times), "runs": len(times),
                      "peak_bytes": peak}))


def run_case(implementation, n_rows, n_classes, n_threads, min_time):
    command = [sys.executable, "-m", "bench.bench_torch_backend", "--worker", implementation,
               str(n_rows), str(n_classes), str(n_threads), str(min_time)]
    env = dict(os.environ, OMP_NUM_THREADS=str(n_threads))
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env,
                            cwd=ROOT)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="seconds of timed runs per case (at least 5 runs)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        implementation, n_rows, n_classes, n_threads, min_time = args.worker
        worker(implementation, int(n_rows), int(n_classes), int(n_threads), float(min_time))
        return

    shapes = QUICK_SHAPES if args.quick else SHAPES
    all_threads = os.cpu_count() or 1
    thread_counts = sorted({1, all_threads})
    print(f"cross_entropy forward + backward, float32, CPU, {all_threads} cores available")
    header = (f"{'shape':>16} {'threads':>7} {'torch ms':>9} {'fastloss ms':>11} "
              f"{'speed-up':>8} {'logits MiB':>10} {'torch MiB':>9} {'fastloss MiB':>12}")
    print(header)
    print("-" * len(header))
    for n_rows, n_classes in shapes:
        for n_threads in thread_counts:
            result = {impl: run_case(impl, n_rows, n_classes, n_threads, args.min_time)
                      for impl in IMPLEMENTATIONS}
            t, f = result["torch"], result["fastloss"]
            print(f"{f'{n_rows} x {n_classes}':>16} {n_threads:>7} "
                  f"{t['median_s'] * 1e3:>9.1f} {f['median_s'] * 1e3:>11.1f} "
                  f"{t['median_s'] / f['median_s']:>7.1f}x "
                  f"{n_rows * n_classes * 4 / 2**20:>10.0f} "
                  f"{t['peak_bytes'] / 2**20:>9.0f} {f['peak_bytes'] / 2**20:>12.0f}",
                  flush=True)
    print("(speed-up = torch median / fastloss median; MiB = peak RSS growth of one "
          "forward + backward, above the inputs)")


if __name__ == "__main__":
    main()
