"""The classic comparison of MSE, cross-entropy and hinge loss, reproduced with fastloss.

Each experiment is one module with three functions:

* ``compute(quick=False)`` runs it with fastloss's kernels and returns its
  numbers (no matplotlib needed; ``quick`` is a smaller run for the tests);
* ``report(result)`` formats those numbers as text;
* ``plot(result, out_dir)`` draws its figure(s) as PNG files (needs matplotlib).

Regenerate every figure and print every number, from the project's root::

    python examples/showcase --out docs/figures

The experiments need SciPy and scikit-learn (bundled datasets only) and the
figures need matplotlib: ``pip install '.[showcase]'``.  The showcase is
demo code, not part of the installed package: it imports ``fastloss`` like
any user of it, and ``import fastloss`` never imports it.
"""
from __future__ import annotations

import importlib

# In the order of the comparison they reproduce.
EXPERIMENTS = (
    "learning_speed",           # 1. MSE's slow start against cross-entropy's fast one
    "cross_entropy_variants",   # 2. the two multiclass cross-entropies differ by an offset
    "sigmoid_derivative",       # 3. where sigma' vanishes
    "margin_losses",            # 4. binary losses against the margin y f(x)
    "hinge_vs_cross_entropy",   # 5. hinge is zero past the margin, cross-entropy is not
    "digits",                   # 6. linear models on the digits data, against scikit-learn
    "heteroscedastic",          # 7. MSE's one variance against gaussian_nll's learned one
    "imbalanced",               # 8. a rare class: cross-entropy against the focal loss
)


def load(name):
    """The module of experiment ``name`` (one of :data:`EXPERIMENTS`)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"{__name__}.{name}")
