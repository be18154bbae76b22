"""fastloss: fused loss-and-gradient kernels for NumPy on CPUs.

Every loss returns ``LossGrad(loss, grad)`` from one pass over the data::

    import fastloss
    loss, grad = fastloss.binary_cross_entropy(logits, target)

``fastloss.reference`` holds the same functions in plain NumPy (it is not
imported here).

Design: the package is layered, each layer importing only those below it.

* the stable scalar maths (``_scalar.pxd``, ``_rows.pxd``) and the kernel
  families (``_elementwise_kernels.pyx.tp``, ``_multiclass_kernels.pyx.tp``),
  compiled twice and chosen at import by ``_dispatch``;
* the argument checks (``_checks``), the target rules (``_targets``), the
  reductions (``_reduction``) and the result types (``_results``);
* the registry of declarations (``_registry``) and the call path of each
  family (``_elementwise``, ``_multiclass``), the only code that calls the
  kernels;
* the thin public face: one declaration and function per loss
  (``_elementwise_losses``, ``_multiclass_losses``, ``_linear_cross_entropy``);
* the NumPy twin (``reference``), derived from the declarations, and the
  framework adapter (``torch``), both imported on demand.

See docs/architecture.md.
"""
from fastloss import _registry
from fastloss._results import LossGrad, LossGradHess
# The declarations register themselves in this order (the order of __all__).
from fastloss._elementwise_losses import *  # noqa: E402,F401,F403
from fastloss._multiclass_losses import *  # noqa: E402,F401,F403
from fastloss._linear_cross_entropy import LinearCrossEntropyGrad, linear_cross_entropy
from fastloss._config import show_config

__version__ = "0.1.0"

# Every registered function, in declaration order (see fastloss._registry).
__all__ = ["LossGrad", "LossGradHess", *_registry.public_names(), "show_config",
           "LinearCrossEntropyGrad"]
