"""fastloss.torch against torch's own losses at the batch sizes people train with.

Run from the repository root::

    python -m bench.torch_matrix            # the whole matrix (a few minutes)
    python -m bench.torch_matrix --quick    # small shapes, a smoke run (< 30 s)
    python -m bench.torch_matrix --loss kl_div --loss nll_loss   # some losses only

For every loss of ``fastloss.torch`` and every shape of the matrix, float32,
with one thread and with torch's default thread count, it times the forward
and backward pass of a training step::

    input.grad = None; loss = f(input, target); loss.backward()

for torch's function, fastloss's and the autograd floor ``input.sum().backward()``
(the cost of any autograd loss: below it no loss can go; for gaussian_nll_loss,
whose var is learned too, the sum of input and var).  sigmoid_focal_loss is
timed against torchvision's formula written in torch (torchvision does not
install beside this torch).  The three take
turns, round after round, in one process, so that a noisy machine slows them
alike; each round times a loop of calls and the table gives the medians, and
the ratio torch / fastloss (above 1: fastloss is faster).

The closing note takes apart one fastloss call of cross_entropy at 32 x 10:
the compiled call (checks of the tensors, kernel, loss tensor), the kernel
alone, and the autograd Function (result tensors, apply and backward).

The table and the note are printed, and saved with a bar chart of the ratios
to ``--out`` (default bench/results/latest, not tracked by git;
``--update-results`` writes the committed bench/results/torch_matrix.*):
torch_matrix.json, .md and .png (``*_quick.*`` for --quick).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import fastloss.torch as flt

RESULTS = Path(__file__).resolve().parent / "results"

# loss name: shapes (rows x classes for the multiclass losses, N x C x d1 x ... for
# their segmentation form, elements else)
FULL = {
    "cross_entropy": [(32, 10), (256, 10), (256, 100), (1_024, 1_000), (4_096, 1_000),
                      (8_192, 128), (512, 32_000), (32, 10, 32, 32), (8, 21, 128, 128)],
    "binary_cross_entropy_with_logits": [(256,), (4_096,), (1_000_000,)],
    "mse_loss": [(256,), (4_096,), (1_000_000,)],
    "huber_loss": [(256,), (4_096,), (1_000_000,)],
    "multi_margin_loss": [(32, 10), (256, 100), (1_024, 1_000)],
    "nll_loss": [(32, 10), (256, 100), (1_024, 1_000), (8_192, 128), (8, 21, 128, 128)],
    "kl_div": [(32, 10), (256, 100), (1_024, 1_000), (1_000_000,)],
    "l1_loss": [(256,), (4_096,), (1_000_000,)],
    "smooth_l1_loss": [(256,), (4_096,), (1_000_000,)],
    "poisson_nll_loss": [(256,), (4_096,), (1_000_000,)],
    "gaussian_nll_loss": [(256,), (4_096,), (1_000_000,)],
    "sigmoid_focal_loss": [(256,), (4_096,), (1_000_000,)],
}
QUICK = {
    "cross_entropy": [(32, 10), (256, 100), (4, 5, 8, 8)],
    "binary_cross_entropy_with_logits": [(4_096,)],
    "mse_loss": [(256,)],
    "huber_loss": [(256,)],
    "multi_margin_loss": [(32, 10)],
    "nll_loss": [(256, 100)],
    "kl_div": [(256, 100)],
    "l1_loss": [(256,)],
    "smooth_l1_loss": [(256,)],
    "poisson_nll_loss": [(256,)],
    "gaussian_nll_loss": [(256,)],
    "sigmoid_focal_loss": [(256,)],
}
# Options of the timed calls: kl_div's default "mean" warns, "batchmean" is the
# divergence; sigmoid_focal_loss's default is torchvision's "none".
OPTIONS = {"kl_div": {"reduction": "batchmean"}, "sigmoid_focal_loss": {"reduction": "mean"}}
# torch's side of a loss torch lacks: torchvision's formula, written in torch
# (torchvision is not installed beside this torch).
TORCH_FUNCTIONS = {
    "sigmoid_focal_loss": lambda x, t, alpha=0.25, gamma=2, reduction="none":
        flt._torch_sigmoid_focal_loss(x, t, alpha, gamma, reduction),
}
# The targets: never slower than torch (within 5%, the noise between
# runs); at least 1.5x where torch does real work.
NOISE = 0.95
FAST_ROWS = {("cross_entropy", (256, 10)), ("cross_entropy", (1_024, 1_000)),
             ("cross_entropy", (4_096, 1_000)), ("cross_entropy", (8_192, 128)),
             ("cross_entropy", (512, 32_000)),
             ("binary_cross_entropy_with_logits", (1_000_000,)), ("mse_loss", (1_000_000,)),
             ("cross_entropy", (32, 10, 32, 32)), ("cross_entropy", (8, 21, 128, 128)),
             ("kl_div", (256, 100)), ("kl_div", (1_024, 1_000)), ("kl_div", (1_000_000,)),
             ("nll_loss", (8, 21, 128, 128)),
             ("l1_loss", (1_000_000,)), ("smooth_l1_loss", (1_000_000,)),
             ("poisson_nll_loss", (1_000_000,)), ("gaussian_nll_loss", (1_000_000,)),
             ("sigmoid_focal_loss", (1_000_000,))}


def make_inputs(loss, shape, seed=0):
    """(input, target) of one case: float32 logits, log-probabilities or
    predictions, its target."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).mul_(2)
    if loss in ("nll_loss", "kl_div"):
        x = torch.log_softmax(x, dim=-1 if len(shape) == 1 else 1)
    x.requires_grad_(True)
    if loss in ("cross_entropy", "multi_margin_loss", "nll_loss"):
        target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=generator)
    elif loss == "kl_div":
        target = torch.softmax(torch.randn(shape, generator=generator), dim=-1)
    elif loss == "binary_cross_entropy_with_logits":
        target = torch.rand(shape, generator=generator)
    elif loss == "poisson_nll_loss":          # counts; x holds log-rates
        target = torch.poisson(torch.rand(shape, generator=generator) * 8, generator=generator)
    elif loss == "sigmoid_focal_loss":        # 10% positives
        target = (torch.rand(shape, generator=generator) > 0.9).float()
    else:
        target = torch.randn(shape, generator=generator)
    return x, target


def extra_inputs(loss, x, seed=1):
    """The further inputs of a call: gaussian_nll_loss's var (of the input's shape,
    learned: it requires a gradient, which the timed step computes too)."""
    if loss != "gaussian_nll_loss":
        return ()
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=generator).add_(0.1).requires_grad_(True),)


def torch_function(loss):
    return TORCH_FUNCTIONS.get(loss) or getattr(F, loss)


def steps(loss, x, target, extra=()):
    """The timed calls: torch's step, fastloss's step and the autograd floor."""
    ours, theirs = getattr(flt, loss), torch_function(loss)
    options = OPTIONS.get(loss, {})

    def torch_step():
        x.grad = None
        for t in extra:
            t.grad = None
        theirs(x, target, *extra, **options).backward()

    def fastloss_step():
        x.grad = None
        for t in extra:
            t.grad = None
        ours(x, target, *extra, **options).backward()

    def floor_step():
        x.grad = None
        if extra:                   # every differentiated input (gaussian_nll_loss's var)
            for t in extra:
                t.grad = None
            sum([t.sum() for t in extra], x.sum()).backward()
        else:
            x.sum().backward()

    return {"torch": torch_step, "fastloss": fastloss_step, "floor": floor_step}


def per_call_seconds(call, min_time):
    """How many calls make a loop of about min_time (at least one)."""
    call()
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    return max(1, int(min_time / max(once, 1e-7)))


def interleaved_medians(calls, rounds, min_time):
    """Median seconds per call of each callable, the callables taking turns."""
    loops = {name: per_call_seconds(call, min_time) for name, call in calls.items()}
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            n = loops[name]
            start = time.perf_counter()
            for _ in range(n):
                call()
            times[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(values) for name, values in times.items()}


def fused_expected(loss, shape):
    """Whether fastloss computes this case (small nll_loss, smooth_l1_loss,
    multi_margin_loss and (N, C, d1, ...) cross_entropy calls are torch's own:
    fastloss.torch's docstring)."""
    n = int(np.prod(shape))
    if loss == "multi_margin_loss":
        return n >= flt._MULTI_MARGIN_TORCH_BELOW
    small = n < flt._TORCH_BELOW_ELEMENTS
    return not (small and (loss in ("nll_loss", "smooth_l1_loss") or len(shape) > 2))


def check_case(loss, x, target, extra=()):
    """fastloss's loss and gradients equal torch's here, and the fused path ran
    where it should."""
    options = OPTIONS.get(loss, {})
    ours = getattr(flt, loss)(x, target, *extra, **options)
    fused = type(ours.grad_fn).__name__ in ("_FusedLossBackward", "_FusedGaussianBackward")
    assert fused == fused_expected(loss, tuple(x.shape)), (loss, ours.grad_fn)
    ours_grads = torch.autograd.grad(ours, (x,) + extra)
    theirs = torch_function(loss)(x, target, *extra, **options)
    theirs_grads = torch.autograd.grad(theirs, (x,) + extra)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    for got, expected in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


def run_matrix(matrix, thread_counts, rounds, min_time, check):
    rows = []
    for loss, shapes in matrix.items():
        for shape in shapes:
            x, target = make_inputs(loss, shape)
            extra = extra_inputs(loss, x)
            if check:
                check_case(loss, x, target, extra)
            for threads in thread_counts:
                torch.set_num_threads(threads)
                medians = interleaved_medians(steps(loss, x, target, extra), rounds, min_time)
                row = {"loss": loss, "shape": list(shape), "threads": threads,
                       **{f"{name}_s": value for name, value in medians.items()}}
                row["ratio"] = medians["torch"] / medians["fastloss"]
                rows.append(row)
                print(format_row(row), flush=True)
            del x, target, extra
    return rows


def format_shape(shape):
    return " x ".join(f"{n:_}" for n in shape)


HEADER = (f"{'loss':<33} {'shape':>15} {'threads':>7} {'floor us':>9} {'torch us':>10} "
          f"{'fastloss us':>11} {'torch/fastloss':>14}")


def format_row(row):
    return (f"{row['loss']:<33} {format_shape(row['shape']):>15} {row['threads']:>7} "
            f"{row['floor_s'] * 1e6:>9.1f} {row['torch_s'] * 1e6:>10.1f} "
            f"{row['fastloss_s'] * 1e6:>11.1f} {row['ratio']:>14.2f}")


def markdown(rows, machine_line, note, summary):
    """The table, the summary and the note as Markdown (the README's form)."""
    lines = [f"Machine: {machine_line}; float32, forward + backward, median us per call",
             "",
             "| loss | shape | threads | autograd floor | torch | fastloss | torch / fastloss |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['loss']} | {format_shape(row['shape'])} | {row['threads']} | "
                     f"{row['floor_s'] * 1e6:.1f} | {row['torch_s'] * 1e6:.1f} | "
                     f"{row['fastloss_s'] * 1e6:.1f} | {row['ratio']:.2f} |")
    return "\n".join(lines + ["", summary, "", note.replace("\n  ", "\n- ")]) + "\n"


def breakdown(rounds, min_time):
    """Where one fastloss cross_entropy call at 32 x 10 spends its time (seconds).

    Each part is timed alone on the same tensors: the compiled call without a
    gradient (fastloss._torch_calls: the checks of the tensors' metadata, the
    kernel's loss-only pass, the 0-d loss tensor), the kernel call alone (loss
    and gradient, through its def specialisation, with the label scan of the
    Python path), and the autograd Function (the result tensors made,
    applied, then backward).
    """
    torch.set_num_threads(1)
    x, target = make_inputs("cross_entropy", (32, 10))
    detached = x.detach()
    labels = target.numpy()
    logits = detached.numpy()
    grad_out = np.zeros((32, 10), np.float32)
    loss_array = np.array(1.0, np.float32)
    kernel = flt._KERNELS["softmax_cross_entropy"][torch.float32]
    no_weight = flt._NO_WEIGHT

    def compiled_call():
        flt._compiled_cross_entropy(detached, target, -100, "mean", None)

    def kernel_call():
        flt.scan_labels(labels, 10, True, -100, no_weight)
        kernel(logits, None, labels, None, None, 0.0, -100, 0.0, 0.0, None, grad_out, None,
               1 / 32, 1)

    def function():
        x.grad = None
        loss, grad = torch.from_numpy(loss_array.copy()), torch.from_numpy(grad_out.copy())
        flt._apply_fused(x, (loss, grad), None).backward()

    calls = steps("cross_entropy", x, target)
    calls.update(compiled=compiled_call, kernel=kernel_call, function=function)
    return interleaved_medians(calls, rounds, min_time)


def breakdown_note(parts):
    us = {name: value * 1e6 for name, value in parts.items()}
    named = us["compiled"] + us["function"]
    lines = [
        "Where fastloss.torch.cross_entropy's time goes at 32 x 10 (one thread, "
        "forward + backward, us per call):",
        f"  torch's cross_entropy {us['torch']:.1f}; fastloss {us['fastloss']:.1f}; "
        f"the autograd floor x.sum().backward() {us['floor']:.1f}",
        f"  the autograd Function (result tensors, apply, backward) {us['function']:.1f}",
        f"  the compiled call without a gradient (checks, kernel, loss tensor) "
        f"{us['compiled']:.1f}",
        f"  (the kernel alone, loss and gradient, label scan included: {us['kernel']:.1f})",
        f"  the rest (the Python wrapper, the gradient's allocation) "
        f"{us['fastloss'] - named:.1f}",
    ]
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
            f"numpy {np.__version__}, Python {platform.python_version()}")


def save_chart(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no chart)")
        return None
    thread_counts = sorted({row["threads"] for row in rows})
    labels = []
    for row in rows:
        label = f"{row['loss'].replace('binary_cross_entropy_with_logits', 'bce_logits')} " \
                f"{format_shape(row['shape'])}"
        if label not in labels:
            labels.append(label)
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(labels) + 1.5))
    height = 0.8 / len(thread_counts)
    for k, threads in enumerate(thread_counts):
        ratios = {f"{r['loss'].replace('binary_cross_entropy_with_logits', 'bce_logits')} "
                  f"{format_shape(r['shape'])}": r["ratio"] for r in rows
                  if r["threads"] == threads}
        values = [ratios.get(label, np.nan) for label in labels]
        positions = [i + k * height for i in range(len(labels))]
        ax.barh(positions, values, height=height,
                label=f"{threads} thread{'s' if threads > 1 else ''}")
        for y, value in zip(positions, values):
            ax.text(value, y, f" {value:.2f}", va="center", fontsize=7)
    # A log axis: 0.5 and 2 are the same distance from 1.
    ax.set_xscale("log")
    ax.set_xticks([0.25, 0.5, 1, 1.5, 2, 4, 8])
    ax.set_xticklabels(["0.25", "0.5", "1", "1.5", "2", "4", "8"])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(1.5, color="gray", linewidth=1, linestyle="--")
    ax.set_yticks([i + height * (len(thread_counts) - 1) / 2 for i in range(len(labels))])
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel("torch time / fastloss time (forward + backward, float32; > 1: fastloss "
                  "faster)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def check_results(rows, parts, chart):
    """The sanity checks of --quick: every figure measured, finite, positive."""
    for row in rows:
        for key in ("floor_s", "torch_s", "fastloss_s", "ratio"):
            assert np.isfinite(row[key]) and row[key] > 0, (row, key)
    for name, value in parts.items():
        assert np.isfinite(value) and value > 0, (name, value)
    # The parts are parts: together about one call, not several.
    assert parts["function"] + parts["kernel"] < 3 * parts["fastloss"], parts
    if chart is not None:
        assert Path(chart).stat().st_size > 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a smoke run")
    parser.add_argument("--out", default=None,
                        help="directory of the results (default bench/results/latest, "
                             "which git does not track)")
    parser.add_argument("--update-results", action="store_true",
                        help="write the committed bench/results/torch_matrix.*")
    parser.add_argument("--loss", action="append", choices=sorted(FULL),
                        help="time only this loss (repeatable; default: every loss)")
    args = parser.parse_args()
    if args.out is None:
        args.out = str(RESULTS if args.update_results else RESULTS / "latest")
    if args.update_results and args.loss:
        parser.error("--update-results writes the whole matrix: no --loss")
    quick = args.quick
    matrix = QUICK if quick else FULL
    if args.loss:
        matrix = {loss: shapes for loss, shapes in matrix.items() if loss in args.loss}
    # Many short rounds: a neighbour that slows the machine for seconds at a
    # time then slows every implementation alike.
    rounds, min_time = (3, 0.01) if quick else (25, 0.02)
    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads})
    print(f"fastloss.torch vs torch, forward + backward, float32: {machine()}")
    print(f"default threads: {default_threads}; medians of {rounds} interleaved rounds")
    print(HEADER)
    print("-" * len(HEADER))
    try:
        rows = run_matrix(matrix, thread_counts, rounds, min_time, check=True)
        parts = breakdown(rounds, min_time)
    finally:
        torch.set_num_threads(default_threads)
    note = breakdown_note(parts)
    print()
    print(note)
    print()
    missed = [r for r in rows if r["ratio"] < NOISE]
    work = [r for r in rows if (r["loss"], tuple(r["shape"])) in FAST_ROWS]
    summary = (f"Rows slower than torch (ratio < {NOISE}): {len(missed)} of {len(rows)}. "
               f"Rows where torch does real work (target 1.5x) below 1.5x: "
               f"{len([r for r in work if r['ratio'] < 1.5])} of {len(work)}.")
    print(summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "torch_matrix_quick" if quick else "torch_matrix"
    chart = save_chart(rows, out / f"{stem}.png")
    with open(out / f"{stem}.json", "w") as f:
        json.dump({"machine": machine(), "default_threads": default_threads, "rows": rows,
                   "breakdown_s": parts, "note": note}, f, indent=1)
    (out / f"{stem}.md").write_text(markdown(rows, machine(), note, summary))
    print(f"saved {out / (stem + '.json')}, {out / (stem + '.md')}"
          + (f" and {chart}" if chart else ""))
    if quick:
        check_results(rows, parts, chart)


if __name__ == "__main__":
    main()
