"""Gradient boosting with fastloss's gradient and Hessian as a LightGBM custom objective.

A gradient-boosting library grows each tree from the first and second
derivatives of the loss with respect to the current raw scores: a leaf's value
is -sum(grad) / (sum(hess) + lambda).  ``hess=True`` gives both from one fused
pass, so any fastloss loss plugs in as a custom objective.

Three models are trained twice from the same data and parameters, once with
LightGBM's built-in objective and once with a custom objective built on
fastloss, and their raw predictions are compared:

* binary classification (breast cancer): ``binary_cross_entropy`` against
  ``objective="binary"``;
* 10-class classification (digits): ``softmax_cross_entropy`` (diagonal
  Hessian) against ``objective="multiclass"``;
* regression (digit value from the pixels): ``mse`` against
  ``objective="regression"``.

Two conventions of LightGBM's built-ins are reproduced so that the models are
the same one: its squared error is (p - y)^2 / 2, so fastloss's
mse gradient and Hessian (2 r and 2) are halved; its multiclass Hessian is
p (1 - p) times K / (K - 1), so the diagonal is scaled by that factor.  The
built-ins also start from the average score unless ``boost_from_average`` is
off, while a custom objective starts from zero: it is turned off here.

Usage::

    python examples/boosting_custom_objective.py [--rounds 50]

The data ships with scikit-learn: no download.  Exits with status 1 if any
prediction differs by more than TOLERANCE.
"""
from __future__ import annotations

import argparse
import sys
import time

import lightgbm as lgb
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

import fastloss

TOLERANCE = 1e-9            # largest allowed |built-in - custom| raw score

PARAMS = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 10, "seed": 0,
          "deterministic": True, "num_threads": 1, "verbose": -1}


def binary_objective(scores, data):
    """LightGBM objective: per-row gradient and Hessian of the logistic loss."""
    result = fastloss.binary_cross_entropy(scores, data.get_label(), reduction="sum",
                                           hess=True)
    return result.grad, result.hess


def multiclass_objective(scores, data):
    """LightGBM objective: softmax cross-entropy, (N, K) gradient and diagonal Hessian.

    LightGBM's own multiclass Hessian is K / (K - 1) p (1 - p); the factor is
    applied so that both objectives grow the same trees.
    """
    n_classes = scores.shape[1]
    labels = data.get_label().astype(np.intp)
    result = fastloss.softmax_cross_entropy(np.ascontiguousarray(scores), labels,
                                            reduction="sum", hess=True)
    return result.grad, result.hess * (n_classes / (n_classes - 1))


def squared_error_objective(scores, data):
    """LightGBM objective: (p - y)^2 / 2, that is half of fastloss's mse."""
    result = fastloss.mse(scores, data.get_label(), reduction="sum", hess=True)
    return 0.5 * result.grad, 0.5 * result.hess


def problems():
    """(name, features, labels, built-in objective parameters, custom objective)."""
    cancer_x, cancer_y = load_breast_cancer(return_X_y=True)
    digits_x, digits_y = load_digits(return_X_y=True)
    return [
        ("binary (breast cancer)", cancer_x, cancer_y.astype(np.float64),
         {"objective": "binary"}, binary_objective),
        ("multiclass (digits, K=10)", digits_x, digits_y.astype(np.float64),
         {"objective": "multiclass", "num_class": 10}, multiclass_objective),
        ("regression (digit value)", digits_x, digits_y.astype(np.float64),
         {"objective": "regression"}, squared_error_objective),
    ]


def train(features, labels, objective_params, rounds):
    params = {**PARAMS, **objective_params, "boost_from_average": False}
    start = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(features, labels), num_boost_round=rounds)
    return booster, time.perf_counter() - start


def run(rounds=50, verbose=True):
    """Train every problem both ways; return {name: summary dict}."""
    results = {}
    for name, features, labels, builtin, custom in problems():
        builtin_booster, builtin_time = train(features, labels, builtin, rounds)
        custom_params = {**builtin, "objective": custom}
        custom_booster, custom_time = train(features, labels, custom_params, rounds)
        builtin_scores = builtin_booster.predict(features, raw_score=True)
        custom_scores = custom_booster.predict(features, raw_score=True)
        results[name] = {
            "max_difference": float(np.max(np.abs(builtin_scores - custom_scores))),
            "max_abs_score": float(np.max(np.abs(builtin_scores))),
            "n_trees": custom_booster.num_trees(),
            "builtin_seconds": builtin_time,
            "custom_seconds": custom_time,
        }
        if verbose:
            r = results[name]
            print(f"{name:27s} {r['n_trees']:4d} trees  max |built-in - fastloss| raw score "
                  f"{r['max_difference']:.3g} (scores up to {r['max_abs_score']:.3g})  "
                  f"train {builtin_time:.2f} s built-in, {custom_time:.2f} s fastloss")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    results = run(args.rounds)
    worst = max(r["max_difference"] for r in results.values())
    if worst > TOLERANCE:
        print(f"FAIL: predictions differ by {worst:.3g} > {TOLERANCE:g}")
        return 1
    print(f"OK: every prediction matches LightGBM's built-in objective to {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
