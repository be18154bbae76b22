"""fastloss: fused loss-and-gradient kernels for NumPy on CPUs.

Every loss returns ``LossGrad(loss, grad)`` from one pass over the data::

    import fastloss
    loss, grad = fastloss.binary_cross_entropy(logits, target)

``fastloss.reference`` holds the same functions in plain NumPy.
"""
from fastloss._validation import LossGrad, LossGradHess
from fastloss._elementwise import binary_cross_entropy, hinge, huber, mse, squared_hinge
from fastloss._multiclass import (kl_divergence, log_softmax, logsumexp, multiclass_hinge,
                                  softmax, softmax_binary_cross_entropy, softmax_cross_entropy)
from fastloss._config import show_config
from fastloss._linear_cross_entropy import LinearCrossEntropyGrad, linear_cross_entropy
from fastloss._more_losses import *  # noqa: F401,F403  (issue #15: l1, ..., gaussian_nll)

__version__ = "0.1.0"

__all__ = [
    "LossGrad",
    "LossGradHess",
    "mse",
    "huber",
    "binary_cross_entropy",
    "hinge",
    "squared_hinge",
    "softmax_cross_entropy",
    "softmax_binary_cross_entropy",
    "kl_divergence",
    "multiclass_hinge",
    "logsumexp",
    "softmax",
    "log_softmax",
    "show_config",
    "LinearCrossEntropyGrad",
    "linear_cross_entropy",
]
__all__ += _more_losses.__all__     # noqa: F405  (issue #15, until the registry)
