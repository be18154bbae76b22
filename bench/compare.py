"""The headline comparison: fastloss against the memory floor and every installed peer.

Run from the repository root::

    python -m bench.compare            # the full comparison (several minutes)
    python -m bench.compare --quick    # small shapes, a smoke test of about 15 s

Results go to ``bench/results/latest/`` (not tracked by git);
``--update-results`` writes the committed ``bench/results/compare.*`` instead.

For each kernel and shape it times, side by side in one process (the
implementations take turns, round after round, so that a noisy machine
slows them alike), the median of several calls of:

* the floor: ``np.subtract(pred, target, out=g)`` for an elementwise loss
  (read two arrays, write one), ``np.copyto(g, logits)`` for a multiclass one;
* fastloss (loss and gradient, one thread unless stated), twice: with a
  fresh gradient array per call (what the peers do too) and with one
  preallocated gradient buffer reused through ``out=`` (what a training
  loop does, and what the floor does: a fresh array of hundreds of MB costs
  the kernel's page faults and page zeroing);
* the peers that are installed: PyTorch forward + backward, JAX
  ``jit(value_and_grad)``, scikit-learn's ``loss_gradient``, and
  ``fastloss.reference``.

It also times a few cache-resident inputs (softmax_cross_entropy 1_024 x 1_000
and 256 x 10, binary_cross_entropy 4_096), each called repeatedly, in ns per
element beside the peers': there the compute and the per-call overhead decide.

It prints a table (times in ms, fastloss as a multiple of the floor with a
fresh and with a reused gradient buffer, and its speed-up over the fastest
peer, which compares the fresh-array figures), the speed-up of two threads over one, the
cost of the gradient (grad=False vs grad=True), and a line describing the
machine; it saves everything as JSON and, when matplotlib is installed, as a
bar chart (PNG).  Before it exits it checks its own results (every time
finite and positive, every installed peer timed or its absence explained,
every file written) and fails loudly if one is wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from bench import cases

# XLA reads its thread flags when jax is first imported: before anything else.
cases.limit_jax_threads(1)

import numpy as np  # noqa: E402

import fastloss  # noqa: E402

PEER_ORDER = ["torch", "jax", "sklearn", "reference"]

FULL = {
    "elementwise": [(10_000_000,)],
    "multiclass": [(65_536, 1_000), (2_048, 32_768), (1_000_000, 10)],
    "threads_shape": (65_536, 1_000),
    "repeats": 7,
    "cache_resident": [("softmax_cross_entropy", (1_024, 1_000)),
                       ("softmax_cross_entropy", (256, 10)),
                       ("binary_cross_entropy", (4_096,))],
}
QUICK = {
    "elementwise": [(200_000,)],
    "multiclass": [(4_096, 100), (20_000, 10)],
    "threads_shape": (4_096, 100),
    "repeats": 3,
    "cache_resident": [("softmax_cross_entropy", (1_024, 1_000)),
                       ("softmax_cross_entropy", (256, 10)),
                       ("binary_cross_entropy", (4_096,))],
}


# --- timing -------------------------------------------------------------------

def time_once(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_side_by_side(calls, repeats, budget=6.0):
    """Median seconds of each call; the calls take turns, round after round.

    Each call is timed ``repeats`` times, or fewer when that would take more
    than ``budget`` seconds (at least 3 times, once for a call of seconds).
    """
    samples = {name: [time_once(call)] for name, call in calls.items()}
    wanted = {}
    for name, (first,) in samples.items():
        affordable = int(budget / max(first, 1e-9))
        wanted[name] = max(1 if first > budget / 3 else 3, min(repeats, affordable))
    for round_ in range(1, max(wanted.values())):
        for name, call in calls.items():
            if round_ < wanted[name]:
                samples[name].append(time_once(call))
    return {name: statistics.median(values) for name, values in samples.items()}


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total, width=30):
        self.total, self.done, self.width = total, 0, width
        self.start = time.perf_counter()

    def step(self, label):
        self.done += 1
        filled = int(self.width * self.done / self.total)
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {elapsed:6.1f}s  {label:<48.48}")
        sys.stderr.flush()
        if self.done == self.total:
            sys.stderr.write("\n")


# --- the machine ----------------------------------------------------------------

def cpu_name():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_description():
    with contextlib.redirect_stdout(io.StringIO()):
        config = fastloss.show_config()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "kernels": config.get("kernels", "?"),
        "openmp_runtime": config.get("openmp_runtime"),
        "default_n_threads": config.get("default_n_threads"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "peers": peer_versions(),
    }


def peer_versions():
    versions = {}
    for module in ("torch", "jax", "sklearn"):
        with contextlib.suppress(ImportError):
            versions[module] = __import__(module).__version__
    return versions


# --- the cases ------------------------------------------------------------------

def plan(config):
    """(kernel, shape) pairs to run, in table order."""
    rows = [(kernel, shape) for kernel in cases.ELEMENTWISE for shape in config["elementwise"]]
    rows += [(kernel, shape) for kernel in cases.MULTICLASS if cases.has_kernel(kernel)
             for shape in config["multiclass"]]
    return rows


def add_peers(calls, kernel, data):
    """Add each installed peer's call to calls; return {peer: why not} for the others."""
    skipped = {}
    for peer in PEER_ORDER:
        try:
            calls[peer] = cases.PEERS[peer](kernel, data, 1)
        except cases.Unavailable as reason:
            skipped[peer] = str(reason)
    return skipped


def fastest_peer(figures):
    """The peer with the smallest figure (time or ns per element), or None."""
    peers = {p: figures[p] for p in PEER_ORDER if p in figures}
    return (min(peers, key=peers.get) if peers else None), peers


def run_case(kernel, shape, repeats, dtype=np.float32):
    """Times of the floor, fastloss (with and without gradient) and each installed peer."""
    data = cases.make_inputs(kernel, shape, dtype)
    calls = {"floor": cases.make_floor(kernel, data),
             "fastloss": cases.make_fastloss(kernel, data, 1),
             "fastloss_out": cases.make_fastloss(kernel, data, 1, reuse_out=True),
             "fastloss_no_grad": cases.make_fastloss(kernel, data, 1, grad=False)}
    skipped = add_peers(calls, kernel, data)
    times = time_side_by_side(calls, repeats)
    best_peer, peers = fastest_peer(times)
    return {
        "kernel": kernel,
        "shape": list(shape),
        "dtype": np.dtype(dtype).name,
        "n_threads": 1,
        "seconds": times,
        "skipped": skipped,
        "x_floor": times["fastloss"] / times["floor"],
        "x_floor_out": times["fastloss_out"] / times["floor"],
        "best_peer": best_peer,
        "speedup_over_best_peer": peers[best_peer] / times["fastloss"] if peers else None,
        "grad_cost": times["fastloss"] / times["fastloss_no_grad"],
    }


def repeated(call, times):
    """``call`` run ``times`` times in a row: one timed sample of a cache-resident case."""
    def run():
        for _ in range(times):
            call()
    return run


def run_cache_resident(kernel, shape, repeats, dtype=np.float32, sample_seconds=0.02):
    """ns per element of small inputs that stay in the cache, each called repeatedly.

    Where the data fits in cache (the batch sizes people train with), the
    compute per element decides, and the per-call overhead of every
    implementation counts too.  Each sample times a batch of calls long enough
    (about ``sample_seconds``) for the clock; the batches take turns as in
    run_case.
    """
    data = cases.make_inputs(kernel, shape, dtype)
    calls = {"floor": cases.make_floor(kernel, data),
             "fastloss": cases.make_fastloss(kernel, data, 1),
             "fastloss_out": cases.make_fastloss(kernel, data, 1, reuse_out=True)}
    skipped = add_peers(calls, kernel, data)
    batches = {}
    for name, call in calls.items():
        call()                                  # warm up (and compile, for JAX)
        once = min(time_once(call) for _ in range(3))
        batches[name] = max(1, int(sample_seconds / max(once, 1e-7)))
    times = time_side_by_side({name: repeated(call, batches[name])
                               for name, call in calls.items()}, repeats)
    n_elements = int(np.prod(shape))
    ns = {name: times[name] / batches[name] / n_elements * 1e9 for name in times}
    best_peer, peers = fastest_peer(ns)
    return {
        "kernel": kernel,
        "shape": list(shape),
        "dtype": np.dtype(dtype).name,
        "n_threads": 1,
        "ns_per_element": ns,
        "calls_per_sample": batches,
        "skipped": skipped,
        "best_peer": best_peer,
        "speedup_over_best_peer": peers[best_peer] / ns["fastloss_out"] if peers else None,
    }


def run_overhead(calls=20_000):
    """Per-call cost of fastloss.mse on 10 float64 elements (median of many calls, us)."""
    pred = np.linspace(-1.0, 1.0, 10)
    target = np.zeros(10)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fastloss.mse(pred, target)
        samples.append(time.perf_counter() - start)
    numpy_samples = []
    for _ in range(calls):
        start = time.perf_counter()
        np.subtract(pred, target)
        numpy_samples.append(time.perf_counter() - start)
    return {"mse_10_elements_us": statistics.median(samples) * 1e6,
            "numpy_subtract_10_elements_us": statistics.median(numpy_samples) * 1e6}


def run_threads(shape, repeats, kernel="softmax_cross_entropy", dtype=np.float32):
    """fastloss on 1 thread and on 2 threads."""
    if not cases.has_kernel(kernel):
        return None
    data = cases.make_inputs(kernel, shape, dtype)
    n_threads = 2
    calls = {"1": cases.make_fastloss(kernel, data, 1),
             str(n_threads): cases.make_fastloss(kernel, data, n_threads)}
    times = time_side_by_side(calls, repeats)
    return {"kernel": kernel, "shape": list(shape), "seconds": times,
            "speedup": times["1"] / times[str(n_threads)], "n_threads": n_threads}


# --- output ---------------------------------------------------------------------

def format_shape(shape):
    return " x ".join(f"{n:_}" for n in shape)


def format_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def speedup_words(speedup):
    """'are 1.73x faster than' or, for a slowdown, 'are 7.7x slower than'."""
    if speedup >= 1:
        return f"are {speedup:.2f}x faster than"
    return f"are {1 / speedup:.2f}x slower than"


def table(results, machine):
    peers = [p for p in PEER_ORDER if any(p in r["seconds"] for r in results["rows"])]
    header = (["kernel", "shape", "floor", "fastloss", "fastloss out="] + peers
              + ["x floor", "x floor out=", "vs best peer", "grad=False"])
    lines = [header]
    for r in results["rows"]:
        s = r["seconds"]
        speedup = r["speedup_over_best_peer"]
        lines.append([r["kernel"], format_shape(r["shape"]), format_ms(s["floor"]),
                      format_ms(s["fastloss"]), format_ms(s.get("fastloss_out"))]
                     + [format_ms(s.get(p)) for p in peers]
                     + [f"{r['x_floor']:.2f}",
                        f"{r['x_floor_out']:.2f}" if "x_floor_out" in r else "-",
                        f"{speedup:.1f}x ({r['best_peer']})" if speedup else "-",
                        f"{r['grad_cost']:.2f}x faster"])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]

    def fmt(row):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"

    out = [f"Machine: {machine['cpu']}, {machine['cores']} cores, kernels {machine['kernels']}, "
           f"OpenMP {machine['openmp_runtime']}; float32, 1 thread, median ms",
           "", fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(row) for row in lines[1:]]
    threads = results.get("threads")
    if threads:
        out += ["", f"{threads['kernel']} {format_shape(threads['shape'])}: "
                    f"{threads['n_threads']} threads {speedup_words(threads['speedup'])} 1 "
                    f"({format_ms(threads['seconds']['1'])} ms -> "
                    f"{format_ms(threads['seconds'][str(threads['n_threads'])])} ms)"]
    skipped = sorted({f"{peer}: {why}" for r in results["rows"]
                      for peer, why in r.get("skipped", {}).items()})
    if skipped:
        out += ["", "Not timed (a dash in the table, no bar in the chart):"]
        out += [f"  {line}" for line in skipped]
    resident = results.get("cache_resident")
    if resident:
        names = ["floor", "fastloss", "fastloss_out"] + [
            p for p in PEER_ORDER if any(p in r["ns_per_element"] for r in resident)]
        head = (["kernel (in cache)", "shape"]
                + [{"fastloss_out": "fastloss out="}.get(n, n) for n in names]
                + ["out= vs best peer"])
        rows = [head]
        for r in resident:
            ns = r["ns_per_element"]
            speedup = r["speedup_over_best_peer"]
            rows.append([r["kernel"], format_shape(r["shape"])]
                        + [f"{ns[n]:.3g}" if n in ns else "-" for n in names]
                        + [f"{speedup:.2f}x ({r['best_peer']})" if speedup else "-"])
        w2 = [max(len(str(row[i])) for row in rows) for i in range(len(head))]

        def fmt2(row):
            return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, w2)) + " |"

        out += ["", "Cache-resident inputs, each called repeatedly: ns per element (median)",
                "", fmt2(head), "|" + "|".join("-" * (w + 2) for w in w2) + "|"]
        out += [fmt2(row) for row in rows[1:]]
    overhead = results.get("overhead")
    if overhead:
        out += [f"Per-call overhead: fastloss.mse on 10 elements takes "
                f"{overhead['mse_10_elements_us']:.1f} us (np.subtract on 10 elements: "
                f"{overhead['numpy_subtract_10_elements_us']:.2f} us)."]
    out += ["", "x floor: fastloss time / floor time (floor: np.subtract(pred, target, out=g) "
                "elementwise, np.copyto(g, logits) multiclass, g preallocated: a reference "
                "cost of reading the inputs and writing the gradient once, not a bound; a "
                "fused kernel can beat it).",
            "fastloss: a fresh gradient array per call; fastloss out=: one preallocated "
            "gradient buffer reused through out=, like the floor's g.",
            "vs best peer: time of the fastest peer / fastloss time (fresh array).  "
            "grad=False: time with the gradient / time without it."]
    return "\n".join(out)


def chart(results, path):
    """Bar chart of each implementation's time as a multiple of the floor (log scale)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = results["rows"]
    names = ["fastloss", "fastloss_out"] + [p for p in PEER_ORDER if any(p in r["seconds"] for r in rows)]
    labels = [f"{r['kernel'].replace('_', ' ')}\n{format_shape(r['shape'])}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(9, 1.6 * len(rows)), 5.5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        x = np.arange(len(rows)) + (k - (len(names) - 1) / 2) * width
        ratios = [r["seconds"][name] / r["seconds"]["floor"] if name in r["seconds"] else 0
                  for r in rows]
        ax.bar(x, ratios, width, label="fastloss (out=)" if name == "fastloss_out" else name)
        for xi, ratio in zip(x, ratios):
            if ratio == 0:      # a peer without this loss: say so where its bar would be
                ax.text(xi, 1.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--",
               label="floor (np.subtract / np.copyto)")
    ax.set_yscale("log")
    ax.set_ylabel("time / floor time (lower is better)")
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    m = results["machine"]
    ax.set_title(f"fastloss vs peers, float32, 1 thread: {m['cpu']}, {m['cores']} cores, "
                 f"kernels {m['kernels']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def check(results, files):
    """Fail loudly unless every figure is a finite positive time and every file was written."""
    problems = []
    installed = set(results["machine"]["peers"]) | {"reference"}
    for r in results["rows"]:
        name = f"{r['kernel']} {format_shape(r['shape'])}"
        for what in ("floor", "fastloss", "fastloss_out", "fastloss_no_grad"):
            seconds = r["seconds"].get(what)
            if seconds is None or not np.isfinite(seconds) or seconds <= 0:
                problems.append(f"{name}: {what} time {seconds!r}")
        for peer in installed:
            if peer not in r["seconds"] and not r["skipped"].get(peer):
                problems.append(f"{name}: {peer} is installed but neither timed nor explained")
        for key in ("x_floor", "x_floor_out", "grad_cost"):
            if not np.isfinite(r[key]) or r[key] <= 0:
                problems.append(f"{name}: {key} = {r[key]!r}")
    for r in results.get("cache_resident", []):
        name = f"{r['kernel']} {format_shape(r['shape'])} (in cache)"
        for what in ("floor", "fastloss", "fastloss_out"):
            ns = r["ns_per_element"].get(what)
            if ns is None or not np.isfinite(ns) or ns <= 0:
                problems.append(f"{name}: {what} {ns!r} ns per element")
    threads = results.get("threads")
    if threads is not None and not all(np.isfinite(t) and t > 0
                                       for t in threads["seconds"].values()):
        problems.append(f"threads: {threads['seconds']}")
    for path in files:
        if not Path(path).is_file() or Path(path).stat().st_size == 0:
            problems.append(f"{path} was not written")
    if problems:
        raise SystemExit("bench.compare: wrong results:\n  " + "\n  ".join(problems))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small shapes and few repeats: a smoke test of about 15 s")
    parser.add_argument("--out", default=None,
                        help="directory for the results (default bench/results/latest, "
                             "which git does not track)")
    parser.add_argument("--update-results", action="store_true",
                        help="write the committed bench/results/compare.* (for a release "
                             "of new figures)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "bench/results" if args.update_results else "bench/results/latest"
    config = QUICK if args.quick else FULL

    machine = machine_description()
    todo = plan(config)
    resident = [(k, shape) for k, shape in config["cache_resident"] if cases.has_kernel(k)]
    progress = Progress(len(todo) + len(resident) + 1)
    results = {"machine": machine, "quick": args.quick, "rows": [], "cache_resident": []}
    for kernel, shape in todo:
        results["rows"].append(run_case(kernel, shape, config["repeats"]))
        progress.step(f"{kernel} {format_shape(shape)}")
    for kernel, shape in resident:
        results["cache_resident"].append(run_cache_resident(kernel, shape, config["repeats"]))
        progress.step(f"{kernel} {format_shape(shape)} in cache")
    results["threads"] = run_threads(config["threads_shape"], config["repeats"])
    results["overhead"] = run_overhead()
    progress.step("threads and per-call overhead")

    text = table(results, machine)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "compare_quick" if args.quick else "compare"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    (out / f"{stem}.md").write_text(text + "\n")
    saved = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    if chart(results, out / f"{stem}.png"):
        saved.append(str(out / f"{stem}.png"))
    check(results, saved)
    print("\nSaved " + ", ".join(saved))


if __name__ == "__main__":
    main()
