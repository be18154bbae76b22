"""Per-call overhead of the NumPy API on tiny inputs, against np.subtract (issue #14).

    python -m bench.overhead [--calls 20000 | --loop-ms 1] [--repeats 31]

Every row is a loss called on 10 float32 elements (softmax_cross_entropy:
(2, 5) float32 logits and int labels; gaussian_nll: a var of 10 elements, or
of 5 for a (5, 2) mean), default options unless the row says
otherwise, timed in loops of ``--calls`` calls; the loops of all rows take
turns, ``--repeats`` times, so that a machine whose load changes treats
every row alike, and each row's figure is the median of its loops.  The
ratio is that median over the median of ``np.subtract(a, b, out=c)`` on the
same 10 elements (the issue's targets: at most 2x for the elementwise
losses, 3x for softmax_cross_entropy).

On a loaded machine a loop that outlasts the scheduler's time slice is
often descheduled part way, and its wall time counts the wait: a row of
slow calls in loops of a fixed count then suffers more than a row of fast
ones.  ``--loop-ms`` instead gives each row the number of calls that takes
it about that long (calibrated once, before the loops), so that every row's
loops are alike in length; loops of about 1 ms mostly run undisturbed, and
the median picks those.

Three columns, measured in the same run: the compiled call path
(``fastloss._fastpath``: what a user calls), which calls the kernels'
pointer-level entries (``fastloss/_entries.pxd``); the same path with the
entries unbound, so that it calls the kernels' def specialisations with
memoryviews and (n, 1) views (the compiled path before the entries); and the
Python path it shortcuts (``fastloss._elementwise.run_python``,
``run_several_python`` and softmax_cross_entropy's own checks: the call path
before the compiled one).  gaussian_nll's entry takes a var of the mean's
shape; with one var per row ((5, 2) mean) it calls the def specialisation in
both of the first two columns.
Two rows below the losses show what the kernel call costs by
itself: the kernel's def specialisation called with its arguments ready
(the 2-D views made beforehand).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import timeit

import numpy as np

import fastloss
from fastloss import _dispatch, _elementwise, _elementwise_losses, _fastpath, _multiclass, \
    _multiclass_losses


def cases() -> dict[str, tuple[str, object]]:
    """name -> (kind, call): kind "floor", "loss" (both paths) or "kernel"."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=10).astype(np.float32)
    b = rng.normal(size=10).astype(np.float32)
    c = np.empty(10, np.float32)
    unit = rng.uniform(0, 1, 10).astype(np.float32)
    signs = rng.choice([-1.0, 1.0], 10).astype(np.float32)
    weight = rng.uniform(0.5, 2, 10)
    logits = rng.normal(size=(2, 5)).astype(np.float32)
    labels = np.array([1, 3])
    grad_ce = np.empty((2, 5), np.float32)
    row_weight = np.array([0.5, 2.0])
    kernel = _elementwise._KERNELS["mse"][a.dtype]
    a2, b2, c2 = a.reshape(10, 1), b.reshape(10, 1), c.reshape(10, 1)
    none, no_weight = _dispatch.NO_ROWS[a.dtype], _dispatch.NO_WEIGHT
    ce_kernel = _multiclass._KERNELS["softmax_cross_entropy"][a.dtype]
    rows = rng.normal(size=(256, 10)).astype(np.float32)
    row_labels = rng.integers(0, 10, 256)
    row_grad = np.empty((256, 10), np.float32)
    var = rng.uniform(0.5, 2, 10).astype(np.float32)
    mean2, target2 = a.reshape(5, 2), b.reshape(5, 2)
    table = {
        "np.subtract(a, b, out=c)": ("floor", lambda: np.subtract(a, b, out=c)),
        "mse": ("loss", lambda: fastloss.mse(a, b)),
        "huber": ("loss", lambda: fastloss.huber(a, b)),
        "binary_cross_entropy": ("loss", lambda: fastloss.binary_cross_entropy(a, unit)),
        "hinge": ("loss", lambda: fastloss.hinge(a, signs)),
        "l1": ("loss", lambda: fastloss.l1(a, b)),
        "mse, out=": ("loss", lambda: fastloss.mse(a, b, out=c)),
        "mse, sample_weight": ("loss", lambda: fastloss.mse(a, b, sample_weight=weight)),
        "mse, reduction='none'": ("loss", lambda: fastloss.mse(a, b, reduction="none")),
        "gaussian_nll": ("loss", lambda: fastloss.gaussian_nll(a, b, var)),
        "gaussian_nll (5, 2), var (5,)": (
            "loss", lambda: fastloss.gaussian_nll(mean2, target2, var[:5])),
        "gaussian_nll, sample_weight, reduction='none'": (
            "loss", lambda: fastloss.gaussian_nll(a, b, var, sample_weight=weight,
                                                  reduction="none")),
        "softmax_cross_entropy (2, 5)": (
            "loss", lambda: fastloss.softmax_cross_entropy(logits, labels)),
        "softmax_cross_entropy (2, 5), out=": (
            "loss", lambda: fastloss.softmax_cross_entropy(logits, labels, out=grad_ce)),
        "softmax_cross_entropy (2, 5), sample_weight": (
            "loss", lambda: fastloss.softmax_cross_entropy(logits, labels,
                                                           sample_weight=row_weight)),
        **cross_entropy_options("(2, 5)", logits, labels, grad_ce, rng),
        **cross_entropy_options("(256, 10)", rows, row_labels, row_grad, rng),
        "mse kernel call alone": (
            "kernel", lambda: kernel(a2, b2, no_weight, none, c2, none, 0.1, 0)),
        "softmax_cross_entropy kernel call alone": (
            "kernel", lambda: ce_kernel(logits, None, labels, None, None, 0.0, None, 0.0, 0.0,
                                        None, grad_ce, None, 0.5, 0)),
    }
    return table


def cross_entropy_options(shape: str, logits: np.ndarray, labels: np.ndarray,
                          grad: np.ndarray, rng: np.random.Generator
                          ) -> dict[str, tuple[str, object]]:
    """softmax_cross_entropy's rows with options on ``logits`` (the first row: the plain
    call, each other's "x plain call" figure is against it)."""
    n_rows, n_classes = logits.shape
    options: dict[str, dict[str, object]] = {
        "": {},
        "class_weight": {"class_weight": rng.uniform(0.5, 2, n_classes)},
        "ignore_index": {"ignore_index": int(labels[0])},
        "label_smoothing": {"label_smoothing": 0.1},
        "z_loss": {"z_loss": 1e-4},
        "softcap": {"softcap": 30.0},
        "hess=True": {"hess": True},
        "sample_weight": {"sample_weight": rng.uniform(0.5, 2, n_rows)},
        "reduction='sum'": {"reduction": "sum"},
        "reduction='none'": {"reduction": "none"},
        "out=": {"out": grad},
        "class_weight, ignore_index, label_smoothing, sample_weight": {
            "class_weight": rng.uniform(0.5, 2, n_classes), "ignore_index": int(labels[0]),
            "label_smoothing": 0.1, "sample_weight": rng.uniform(0.5, 2, n_rows)},
    }
    if shape == "(2, 5)":       # (the plain call, out= and sample_weight are rows above)
        options = {name: kwargs for name, kwargs in options.items()
                   if name not in ("", "out=", "sample_weight")}
    table = {}
    for name, kwargs in options.items():
        def call(kwargs: dict[str, object] = kwargs) -> object:
            return fastloss.softmax_cross_entropy(logits, labels, **kwargs)  # type: ignore
        table[f"softmax_cross_entropy {shape}" + (f", {name}" if name else "")] = ("loss", call)
    return table


class PythonPath:
    """Within the block, the losses take the Python path (the call path before the compiled one)."""

    def __enter__(self) -> None:
        _elementwise_losses.run = _elementwise.run_python
        _elementwise_losses.run_several = _elementwise.run_several_python
        _multiclass_losses.fast_call = lambda *args: None

    def __exit__(self, *exc: object) -> None:
        _elementwise_losses.run = _elementwise.run
        _elementwise_losses.run_several = _elementwise.run_several
        _multiclass_losses.fast_call = _multiclass.fast_call


class DefKernels:
    """Within the block, the compiled path calls the kernels' def specialisations (its
    pointer-level entries unbound): the compiled path before the entries."""

    def __enter__(self) -> None:
        _fastpath.bind_elementwise_entries({})
        _fastpath.bind_multiclass_entries({})

    def __exit__(self, *exc: object) -> None:
        _fastpath.bind_elementwise_entries(_dispatch.elementwise_kernels.ENTRIES)
        _fastpath.bind_multiclass_entries(_dispatch.multiclass_kernels.ENTRIES)


def calibrated(call: object, loop_ms: float) -> int:
    """The number of calls of ``call`` that take about ``loop_ms`` (the fastest of a few
    tries, so that a descheduled try does not shorten the loops)."""
    number = 200
    best = min(timeit.timeit(call, number=number) for _ in range(5))  # type: ignore[arg-type]
    return max(1, int(loop_ms * 1e-3 / (best / number)))


def measure(calls: int, repeats: int,
            loop_ms: float | None = None) -> dict[str, dict[str, float]]:
    """name -> {"compiled": ns, "def": ns, "python": ns} (medians of the loops' per-call
    times)."""
    samples: dict[tuple[str, str], list[float]] = {}
    table = cases()
    contexts = {"compiled": contextlib.nullcontext, "def": DefKernels, "python": PythonPath}
    numbers: dict[tuple[str, str], int] = {}
    for name, (kind, call) in table.items():
        for path in (("compiled", "def", "python") if kind == "loss" else ("compiled",)):
            with contexts[path]():
                numbers[name, path] = calls if loop_ms is None else calibrated(call, loop_ms)
    for _ in range(repeats):
        for name, (kind, call) in table.items():
            paths = ("compiled", "def", "python") if kind == "loss" else ("compiled",)
            for path in paths:
                number = numbers[name, path]
                with contexts[path]():
                    seconds = timeit.timeit(call, number=number)  # type: ignore[arg-type]
                samples.setdefault((name, path), []).append(seconds / number * 1e9)
    result: dict[str, dict[str, float]] = {}
    for (name, path), values in samples.items():
        result.setdefault(name, {})[path] = statistics.median(values)
    return result


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {_dispatch.PATH} kernels, Python {platform.python_version()}, " \
           f"NumPy {np.__version__}"


def report(result: dict[str, dict[str, float]], calls: int, repeats: int,
           loop_ms: float | None = None) -> str:
    floor = result["np.subtract(a, b, out=c)"]["compiled"]
    loops = f"{calls} calls" if loop_ms is None else f"about {loop_ms:g} ms each"
    lines = [f"Per-call time on 10 float32 elements ((2, 5) logits for softmax_cross_entropy, "
             f"or the shape named), median of {repeats} loops of {loops}; {machine()}.  "
             f"x plain call: the compiled path's time over that of softmax_cross_entropy's "
             f"plain call of the same shape.",
             "",
             "| call | compiled path (ns) | x np.subtract | x plain call | def kernels (ns) "
             "| x np.subtract | Python path (ns) | x np.subtract |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, times in result.items():
        compiled = times["compiled"]
        plain = next((result[shape]["compiled"] for shape in (
            "softmax_cross_entropy (2, 5)", "softmax_cross_entropy (256, 10)")
            if name.startswith(shape)), None)
        cells = [f"{compiled:.0f} | {compiled / floor:.2f} | "
                 + (f"{compiled / plain:.2f}" if plain is not None else "")]
        for path in ("def", "python"):
            value = times.get(path)
            cells.append(f"{value:.0f} | {value / floor:.2f}" if value is not None else " |")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--loop-ms", type=float, default=None,
                        help="calls per loop chosen per row to last about this long")
    args = parser.parse_args()
    print(report(measure(args.calls, args.repeats, args.loop_ms), args.calls, args.repeats,
                 args.loop_ms))


if __name__ == "__main__":
    main()
