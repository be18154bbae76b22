"""The public result types of the losses, and the type names of the public signatures.

Design: a loss returns a named tuple, so ``loss, grad = fastloss.mse(...)``
works and the fields have names.  ``LossGrad`` is the result of every loss;
``LossGradHess`` adds the diagonal of the Hessian when a loss is called with
``hess=True``.  A loss with several differentiable inputs (a family whose
declaration lists several gradients, such as a Gaussian negative
log-likelihood's mean and variance) returns ``LossGrad(loss, grads)`` with
``grads`` a tuple in the declared order.  The fused linear cross-entropy has a
result of its own (``LinearCrossEntropyGrad``, beside its validation).
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.floating[Any]]
"""A float32 or float64 array (the computation dtype)."""

Reduction = Literal["mean", "sum", "none"]
"""The ``reduction`` argument of every loss."""


class LossGrad(NamedTuple):
    """(loss, grad): the loss (a float, or an array for reduction="none")
    and its gradient with respect to the prediction (None when grad=False)."""

    loss: float | FloatArray
    grad: FloatArray | None


class LossGradHess(NamedTuple):
    """(loss, grad, hess): as LossGrad, plus the diagonal of the Hessian
    of the returned loss with respect to the prediction (returned when hess=True)."""

    loss: float | FloatArray
    grad: FloatArray
    hess: FloatArray
