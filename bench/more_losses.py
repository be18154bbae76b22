"""The losses beyond the seed against their memory floor (issue #15's speed targets).

Run from the repository root::

    python -m bench.more_losses                 # 1e7 float32 elements
    python -m bench.more_losses --size 65536    # in cache: the compute alone
    python -m bench.more_losses --multiclass    # z_loss, softcap, softmax_focal_loss

float32, one thread, reduction "mean", the gradient into a reused ``out=``
buffer (and ``out_var=`` for gaussian_nll), as issue #15 measures them.  The
floor reads each input once and writes each output once (API.md):
``np.subtract(pred, target, out=g)``, for gaussian_nll also
``np.copyto(g_var, var)``.  The calls take turns, round after round, and the
medians are compared (bench.compare.time_side_by_side), so that a noisy
machine slows them alike.  mse is timed beside them for reference.
"""
from __future__ import annotations

import argparse

import numpy as np

import fastloss
from bench.compare import time_side_by_side

# issue #15: at most this many times the floor
TARGETS = {"l1": 1.0, "smooth_l1": 1.0, "pinball": 1.0, "log_cosh": 2.5, "poisson_nll": 2.5,
           "sigmoid_focal_loss": 2.5, "gaussian_nll": 1.5}


def calls(n):
    rng = np.random.default_rng(0)
    pred = (rng.standard_normal(n) * 2).astype(np.float32)
    target = rng.standard_normal(n).astype(np.float32)
    counts = rng.poisson(2.0, n).astype(np.float32)
    labels = (rng.random(n) < 0.5).astype(np.float32)
    var = rng.uniform(0.1, 2.0, n).astype(np.float32)
    g, g_floor = np.empty_like(pred), np.empty_like(pred)
    g_var, g_var_floor = np.empty_like(pred), np.empty_like(pred)
    one = {"n_threads": 1, "out": g}
    return {
        "floor": lambda: np.subtract(pred, target, out=g_floor),
        "floor_gaussian_nll": lambda: (np.subtract(pred, target, out=g_floor),
                                       np.copyto(g_var_floor, var)),
        "mse": lambda: fastloss.mse(pred, target, **one),
        "l1": lambda: fastloss.l1(pred, target, **one),
        "smooth_l1": lambda: fastloss.smooth_l1(pred, target, **one),
        "pinball": lambda: fastloss.pinball(pred, target, quantile=0.3, **one),
        "log_cosh": lambda: fastloss.log_cosh(pred, target, **one),
        "poisson_nll": lambda: fastloss.poisson_nll(pred, counts, **one),
        "sigmoid_focal_loss": lambda: fastloss.sigmoid_focal_loss(pred, labels, **one),
        "gaussian_nll": lambda: fastloss.gaussian_nll(pred, target, var, out_var=g_var, **one),
    }


def multiclass_calls(n_rows, n_classes):
    """softmax_cross_entropy plain, with z_loss, with softcap, and softmax_focal_loss."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((n_rows, n_classes)) * 2).astype(np.float32)
    labels = rng.integers(0, n_classes, n_rows)
    g = np.empty_like(logits)
    one = {"n_threads": 1, "out": g}
    return {
        "softmax_cross_entropy": lambda: fastloss.softmax_cross_entropy(logits, labels, **one),
        "z_loss=1e-4": lambda: fastloss.softmax_cross_entropy(logits, labels, z_loss=1e-4,
                                                              **one),
        "softcap=30": lambda: fastloss.softmax_cross_entropy(logits, labels, softcap=30.0,
                                                             **one),
        "softcap=5": lambda: fastloss.softmax_cross_entropy(logits, labels, softcap=5.0,
                                                            **one),
        "softmax_focal_loss": lambda: fastloss.softmax_focal_loss(logits, labels, **one),
    }


def main_multiclass(shape, repeats):
    todo = multiclass_calls(*shape)
    for call in todo.values():
        call()
    times = time_side_by_side(todo, repeats, budget=60.0)
    plain = times["softmax_cross_entropy"]
    print(f"{shape[0]} x {shape[1]} float32 logits, labels, one thread, mean, out=; "
          f"medians of {repeats}")
    print(f"{'':22s} {'ms':>8s} {'x plain CE':>10s} {'target':>7s}")
    for name, seconds in times.items():
        target = "" if name == "softmax_cross_entropy" else f"{1.5:7.1f}"
        print(f"{name:22s} {seconds * 1e3:8.2f} {seconds / plain:10.2f} {target}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=1e7)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--multiclass", action="store_true",
                        help="softmax_cross_entropy's z_loss and softcap and "
                             "softmax_focal_loss against plain cross-entropy "
                             "(65_536 x 1_000, or --rows and --classes)")
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--classes", type=int, default=1_000)
    args = parser.parse_args(argv)
    if args.multiclass:
        main_multiclass((args.rows, args.classes), args.repeats)
        return
    n = int(args.size)
    todo = calls(n)
    for call in todo.values():
        call()                                      # warm up, map the buffers
    times = time_side_by_side(todo, args.repeats, budget=60.0)
    print(f"{n} float32 elements, one thread, mean, out=; medians of {args.repeats}")
    print(f"{'':20s} {'ms':>8s} {'x floor':>8s} {'target':>7s}")
    for name, seconds in times.items():
        if name.startswith("floor"):
            continue
        floor = times["floor_gaussian_nll" if name == "gaussian_nll" else "floor"]
        target = TARGETS.get(name)
        print(f"{name:20s} {seconds * 1e3:8.2f} {seconds / floor:8.2f} "
              f"{'' if target is None else f'{target:7.1f}'}")


if __name__ == "__main__":
    main()
