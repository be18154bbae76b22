"""The registry of public losses that the generic tests run over.

Each public loss appears once, as a ``LossCase`` that knows how to make valid
inputs of a given shape and dtype and which keyword options it accepts.  The
determinism, thread-safety, layout, property-based and leak tests draw every
loss from ``CASES``, so a new loss is covered by adding one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastloss
import fastloss.reference


@dataclass(frozen=True)
class LossCase:
    """One public loss: its name, valid inputs and option variants.

    Attributes:
      name: the function's name in ``fastloss`` and ``fastloss.reference``.
      make_inputs: ``(rng, shape, dtype) -> (pred, target)``, valid inputs
        with ``pred.shape == shape``.
      ndims: the accepted ``pred.ndim`` values.
      pred_name: the name of the first argument (it appears in error messages).
      options: option-variant id -> ``shape -> dict`` of keyword arguments
        (a function of the shape because some options are per column).
      grad_scale: a bound on |d loss / d pred| per element for the inputs
        made by make_inputs (sets the absolute tolerance of gradient checks).
      target_kind: tells apart two entries of one function with different
        kinds of target (it appears in the test ids).
    """

    name: str
    make_inputs: Callable
    ndims: tuple
    pred_name: str
    options: dict = field(default_factory=lambda: {"default": lambda shape: {}})
    grad_scale: float = 1.0
    target_kind: str = ""

    @property
    def fast(self):
        return getattr(fastloss, self.name)

    @property
    def reference(self):
        return getattr(fastloss.reference, self.name)

    def __repr__(self):
        return f"{self.name}[{self.target_kind}]" if self.target_kind else self.name


def n_columns(shape):
    return 1 if len(shape) == 1 else shape[1]


def regression_inputs(rng, shape, dtype):
    pred = rng.normal(scale=2.0, size=shape).astype(dtype)
    target = rng.normal(size=shape).astype(dtype)
    return pred, target


def bce_inputs(rng, shape, dtype):
    logits = rng.normal(scale=3.0, size=shape).astype(dtype)
    target = rng.uniform(size=shape)
    target[rng.uniform(size=shape) < 0.3] = 0.0     # hard labels as well as soft ones
    target[rng.uniform(size=shape) < 0.3] = 1.0
    return logits, target.astype(dtype)


def hinge_inputs(rng, shape, dtype):
    scores = rng.normal(scale=1.5, size=shape).astype(dtype)
    target = rng.choice(np.array([-1.0, 1.0]), size=shape).astype(dtype)
    return scores, target


CASES = [
    LossCase("mse", regression_inputs, (1, 2), "pred", grad_scale=20.0),
    LossCase("huber", regression_inputs, (1, 2), "pred", options={
        "default": lambda shape: {},
        "delta=0.3": lambda shape: {"delta": 0.3},
        "delta=4": lambda shape: {"delta": 4.0},
    }, grad_scale=4.0),
    LossCase("binary_cross_entropy", bce_inputs, (1, 2), "logits", options={
        "default": lambda shape: {},
        "pos_weight=2.5": lambda shape: {"pos_weight": 2.5},
        "pos_weight=(K,)": lambda shape: {
            "pos_weight": np.linspace(0.25, 3.0, n_columns(shape))},
    }, grad_scale=3.0),
    LossCase("hinge", hinge_inputs, (1,), "scores", options={
        "default": lambda shape: {},
        "margin=0": lambda shape: {"margin": 0.0},
        "margin=2": lambda shape: {"margin": 2.0},
    }),
    LossCase("squared_hinge", hinge_inputs, (1,), "scores", options={
        "default": lambda shape: {},
        "margin=0.5": lambda shape: {"margin": 0.5},
    }, grad_scale=20.0),
]



def label_inputs(rng, shape, dtype):
    logits = rng.normal(scale=3.0, size=shape).astype(dtype)
    labels = rng.integers(0, shape[1], size=shape[0]) if shape[1] > 0 else \
        np.zeros(shape[0], dtype=np.intp)
    return logits, labels


def probability_inputs(rng, shape, dtype):
    logits = rng.normal(scale=3.0, size=shape).astype(dtype)
    target = rng.uniform(size=shape) ** 3            # some near-zero probabilities
    if shape[1] > 0:
        target[:, 0][rng.uniform(size=shape[0]) < 0.2] = 0.0    # exact zeros (0 log 0)
        target /= np.maximum(target.sum(axis=1, keepdims=True), 1e-300)
    return logits, target.astype(dtype)


def either_inputs(rng, shape, dtype):
    """Labels or probabilities, chosen by the seed (both are accepted)."""
    if rng.uniform() < 0.5:
        return label_inputs(rng, shape, dtype)
    return probability_inputs(rng, shape, dtype)


CASES += [
    LossCase("softmax_cross_entropy", label_inputs, (2,), "logits", options={
        "default": lambda shape: {},
        "class_weight": lambda shape: {"class_weight": np.linspace(0.5, 2.0, shape[1])},
        "ignore_index=1": lambda shape: {"ignore_index": 1},
        "label_smoothing=0.1": lambda shape: {"label_smoothing": 0.1},
        "all": lambda shape: {"class_weight": np.linspace(2.0, 0.5, shape[1]),
                              "ignore_index": 0, "label_smoothing": 0.25},
    }),
    LossCase("softmax_cross_entropy", probability_inputs, (2,), "logits", options={
        "default": lambda shape: {},
        "class_weight-label_smoothing": lambda shape: {
            "class_weight": np.linspace(0.5, 2.0, shape[1]), "label_smoothing": 0.2},
    }, target_kind="probabilities"),
    LossCase("softmax_binary_cross_entropy", either_inputs, (2,), "logits"),
    LossCase("kl_divergence", probability_inputs, (2,), "logits"),
    LossCase("multiclass_hinge", label_inputs, (2,), "scores", options={
        "default": lambda shape: {},
        "crammer_singer": lambda shape: {"kind": "crammer_singer"},
        "squared": lambda shape: {"squared": True, "margin": 0.5},
        "crammer_singer-squared": lambda shape: {"kind": "crammer_singer", "squared": True},
    }, grad_scale=20.0),
]

ELEMENTWISE = [case for case in CASES if case.name in
               ("mse", "huber", "binary_cross_entropy", "hinge", "squared_hinge")]
MULTICLASS = [case for case in CASES if case not in ELEMENTWISE]


@dataclass(frozen=True)
class RowUtility:
    """A row-wise utility (logsumexp, softmax, log_softmax): f(x, out=, n_threads=)."""

    name: str

    @property
    def fast(self):
        return getattr(fastloss, self.name)

    @property
    def reference(self):
        return getattr(fastloss.reference, self.name)

    def __repr__(self):
        return self.name


UTILITIES = [RowUtility("logsumexp"), RowUtility("softmax"), RowUtility("log_softmax")]


def variants(cases=CASES):
    """(case, option id) pairs, for pytest.mark.parametrize."""
    return [(case, option) for case in cases for option in case.options]


def variant_ids(cases=CASES):
    return [f"{case!r}[{option}]" for case, option in variants(cases)]


def shape_for(case, n_rows, n_cols):
    """A pred shape this loss accepts: (n_rows, n_cols), or (n_rows * n_cols,) if 1-D only."""
    return (n_rows, n_cols) if 2 in case.ndims else (n_rows * n_cols,)
