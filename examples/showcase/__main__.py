"""Run the showcase: ``python examples/showcase --out docs/figures``.

Runs every experiment (or those named with ``--only``), prints its numbers
and writes its figures as PNG files into the ``--out`` directory.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:
    # Run as a folder (``python examples/showcase``): Python puts this folder
    # first on sys.path, not the project's root, so ``fastloss`` is the
    # installed package (a source tree has no compiled kernels).  Its parent
    # there instead, and this module's package named (PEP 366), make the
    # folder the package ``showcase``, whose experiments import each other
    # relatively.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "showcase"

from . import EXPERIMENTS, load  # noqa: E402

def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python examples/showcase",
        description="Reproduce the classic comparison of MSE, cross-entropy and hinge loss "
                    "with fastloss: print the numbers and write the figures.")
    parser.add_argument("--out", default="docs/figures",
                        help="directory for the PNG figures (default: docs/figures)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, metavar="NAME",
                        help="run only these experiments: " + ", ".join(EXPERIMENTS))
    parser.add_argument("--no-figures", action="store_true",
                        help="print the numbers only (no matplotlib needed)")
    parser.add_argument("--quick", action="store_true",
                        help="the small, fast version of each experiment (as in the tests)")
    args = parser.parse_args(argv)

    if not args.no_figures:
        from ._plot import require_matplotlib
        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"error: {exc} (or pass --no-figures)", file=sys.stderr)
            return 2

    for index, name in enumerate(args.only or EXPERIMENTS, start=1):
        experiment = load(name)
        start = time.perf_counter()
        result = experiment.compute(quick=args.quick)
        elapsed = time.perf_counter() - start
        print(f"== {name} ({elapsed:.1f} s) ==")
        print(experiment.report(result))
        if not args.no_figures:
            paths = experiment.plot(result, args.out)
            if not paths:
                print(f"error: {name} wrote no figure", file=sys.stderr)
                return 1
            for path in paths:
                if not _is_png(path):
                    print(f"error: {name}: {path} is not a PNG image", file=sys.stderr)
                    return 1
                print(f"  wrote {path}")
        print()
    return 0


def _is_png(path):
    """True when path is a non-trivial file that starts with the PNG signature."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, 2)
            size = f.tell()
    except OSError:
        return False
    return head == b"\x89PNG\r\n\x1a\n" and size > 1000


if __name__ == "__main__":
    sys.exit(main())
