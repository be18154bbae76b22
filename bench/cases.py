"""What the benchmarks run: the kernels, their inputs, the floor and the peers.

Shared by the pytest-benchmark suite (``bench/test_bench_*.py``) and the
headline comparison (``python -m bench.compare``), so that both time exactly
the same calls.

Every implementation is built by a *factory* ``make(inputs, n_threads)`` that
does the one-off work (moving data into a framework's tensors, compiling a JAX
function, warming it up) and returns a no-argument callable that computes the
loss and its gradient with respect to the predictions, the timed part.  A
factory raises ``Unavailable`` when its library is not installed.

The benchmarked losses are those registered in fastloss (fastloss._registry),
by name: the inputs of a loss follow from its declared target rule (realistic
values, fixed seed), and the peers' versions are tables keyed by the same
names (a peer without the loss is ``Unavailable``).
"""
from __future__ import annotations

import os

import numpy as np

import fastloss
import fastloss.reference
from fastloss import _targets
from fastloss._registry import REGISTRY


class Unavailable(Exception):
    """The implementation's library is not installed (or lacks this loss)."""


# Every registered elementwise loss; the multiclass losses of the headline comparison.
ELEMENTWISE = [name for name, spec in REGISTRY.items() if spec.family == "elementwise"]
MULTICLASS = ["softmax_cross_entropy"]


def has_kernel(name):
    return hasattr(fastloss, name)


def _targets_for(rule, rng, shape, dtype):
    """Targets of a target rule: realistic values for predictions of ``shape``."""
    if rule is _targets.REAL:
        return rng.standard_normal(shape).astype(dtype)
    if rule is _targets.UNIT_INTERVAL:
        return (rng.random(shape) < 0.5).astype(dtype)
    if rule is _targets.SIGNS:
        return np.where(rng.random(shape) < 0.5, -1, 1).astype(dtype)
    if rule is _targets.COUNTS:
        return rng.poisson(3.0, shape).astype(dtype)
    if rule.labels:
        return rng.integers(0, shape[1], size=shape[0]).astype(np.intp)
    if rule is _targets.PROBABILITIES:
        target = rng.random(shape)
        return (target / target.sum(axis=1, keepdims=True)).astype(dtype)
    raise ValueError(f"no benchmark targets for the target rule {rule.name!r}")


def make_inputs(kernel, shape, dtype, seed=0):
    """Predictions and targets for one registered loss (and its further inputs: a
    variance in (0.5, 2)): realistic values, fixed seed."""
    if kernel not in REGISTRY:
        raise ValueError(f"unknown kernel {kernel!r}")
    spec = REGISTRY[kernel]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    pred = (rng.standard_normal(shape) * 2).astype(dtype)
    inputs = {"pred": pred, "target": _targets_for(spec.target, rng, shape, dtype)}
    inputs["more"] = tuple(rng.uniform(0.5, 2.0, shape).astype(dtype)
                           for _ in spec.inputs[2:])
    return inputs


# --- the floor: the memory traffic a fused kernel cannot avoid --------------

def make_floor(kernel, inputs):
    """Elementwise: read two arrays, write one (and read and write once more for each
    further input with a gradient, as a Gaussian NLL's variance).  Multiclass: read and
    write N*C."""
    pred, target = inputs["pred"], inputs["target"]
    dst = np.empty_like(pred)
    if REGISTRY[kernel].family == "multiclass":
        return lambda: np.copyto(dst, pred)
    more = inputs.get("more", ())
    if not more:
        return lambda: np.subtract(pred, target, out=dst)
    more_dst = [np.empty_like(x) for x in more]

    def floor():
        np.subtract(pred, target, out=dst)
        for x, x_dst in zip(more, more_dst):
            np.copyto(x_dst, x)
    return floor


# --- fastloss and its reference ------------------------------------------

def make_fastloss(kernel, inputs, n_threads, grad=True, reuse_out=False):
    """fastloss with a fresh gradient array per call, or (``reuse_out``) with one
    preallocated gradient buffer passed as ``out=`` to every call, as a training
    loop would: then, like the floor, it writes into memory already mapped (and
    ``out_<input>=`` buffers for the gradients of further inputs)."""
    if not has_kernel(kernel):
        raise Unavailable(f"fastloss has no {kernel}")
    fn = getattr(fastloss, kernel)
    args = (inputs["pred"], inputs["target"], *inputs.get("more", ()))
    if reuse_out:
        outs = {"out": np.empty_like(args[0])}
        spec = REGISTRY[kernel]
        for name, extra in zip(spec.gradients[1:], spec.extra_outs):
            outs[extra] = np.empty_like(args[spec.inputs.index(name)])
        fn(*args, n_threads=n_threads, **outs)
        return lambda: fn(*args, n_threads=n_threads, **outs)
    fn(*args, n_threads=n_threads, grad=grad)
    return lambda: fn(*args, n_threads=n_threads, grad=grad)


def make_reference(kernel, inputs, n_threads):
    fn = getattr(fastloss.reference, kernel, None)
    if fn is None:
        raise Unavailable(f"fastloss.reference has no {kernel}")
    args = (inputs["pred"], inputs["target"], *inputs.get("more", ()))
    return lambda: fn(*args)


# --- PyTorch: forward + backward ----------------------------------------------

def make_torch(kernel, inputs, n_threads):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise Unavailable("torch is not installed") from None
    torch.set_num_threads(n_threads)
    pred = torch.from_numpy(inputs["pred"]).requires_grad_(True)
    target = torch.from_numpy(inputs["target"])
    more = [torch.from_numpy(x) for x in inputs.get("more", ())]
    # torch's counterpart from the declaration, called with its defaults, unless
    # the loss has an expression of its own here.
    overrides = {
        # torch has no binary hinge: the natural autograd expression.
        "hinge": lambda: torch.clamp(1.0 - target * pred, min=0).mean(),
        "squared_hinge": lambda: torch.clamp(1.0 - target * pred, min=0).square().mean(),
        # torch's kl_div takes log-probabilities
        "kl_divergence": lambda: F.kl_div(F.log_softmax(pred, dim=1), target,
                                          reduction="batchmean"),
    }
    counterpart = REGISTRY[kernel].torch
    forward = overrides.get(kernel)
    if forward is None and counterpart is not None:
        function = getattr(F, counterpart)
        forward = lambda: function(pred, target, *more)  # noqa: E731
    if forward is None:
        raise Unavailable(f"no torch version of {kernel} here")

    def run():
        loss = forward()
        (grad,) = torch.autograd.grad(loss, pred)
        return loss.item(), grad

    run()
    return run


# --- JAX: jit(value_and_grad) -------------------------------------------------

def limit_jax_threads(n_threads):
    """Ask XLA's CPU client for n_threads; effective only before jax is imported."""
    if n_threads == 1 and "jax" not in __import__("sys").modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1").strip()


def make_jax(kernel, inputs, n_threads):
    limit_jax_threads(n_threads)
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise Unavailable("jax is not installed") from None
    if inputs["pred"].dtype == np.float64:
        jax.config.update("jax_enable_x64", True)

    def softplus(x):
        return jnp.logaddexp(0.0, x)

    def softmax_cross_entropy(x, t):
        logp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=-1))

    def huber(p, t):
        r = jnp.abs(p - t)
        return jnp.mean(jnp.where(r <= 1.0, 0.5 * r * r, r - 0.5))

    loss = {
        "mse": lambda p, t: jnp.mean((p - t) ** 2),
        "huber": huber,
        "binary_cross_entropy": lambda x, t: jnp.mean(t * softplus(-x) + (1 - t) * softplus(x)),
        "hinge": lambda s, t: jnp.mean(jnp.maximum(1.0 - t * s, 0.0)),
        "squared_hinge": lambda s, t: jnp.mean(jnp.maximum(1.0 - t * s, 0.0) ** 2),
        "softmax_cross_entropy": softmax_cross_entropy,
    }.get(kernel)
    if loss is None:
        raise Unavailable(f"no JAX version of {kernel} here")
    fn = jax.jit(jax.value_and_grad(loss))
    pred = jax.device_put(inputs["pred"])
    target = jax.device_put(inputs["target"])

    def run():
        value, grad = fn(pred, target)
        grad.block_until_ready()
        return value, grad

    run()
    return run


# --- scikit-learn: the Cython losses of its gradient boosting and linear models ---

def make_sklearn(kernel, inputs, n_threads):
    try:
        from sklearn._loss import loss as sk
    except ImportError:
        raise Unavailable("scikit-learn is not installed") from None
    pred, target = inputs["pred"], inputs["target"]
    if kernel == "binary_cross_entropy":
        model = sk.HalfBinomialLoss()
    elif kernel == "softmax_cross_entropy":
        model = sk.HalfMultinomialLoss(n_classes=pred.shape[1])
        target = target.astype(pred.dtype)        # scikit-learn takes float labels
    elif kernel == "mse":
        model = sk.HalfSquaredError()             # 0.5 r^2: the same work
    elif kernel == "huber":
        model = sk.HuberLoss(delta=1.0)
    else:
        raise Unavailable(f"scikit-learn has no {kernel}")
    loss_out = np.empty(pred.shape[0], dtype=pred.dtype)
    grad_out = np.empty_like(pred)

    def run():
        loss, grad = model.loss_gradient(target, pred, loss_out=loss_out,
                                         gradient_out=grad_out, n_threads=n_threads)
        return float(np.mean(loss)), grad

    run()
    return run


PEERS = {
    "torch": make_torch,
    "jax": make_jax,
    "sklearn": make_sklearn,
    "reference": make_reference,
}
