"""Accuracy report: ulp errors of fastloss and its peers against an exact oracle.

For every function and dtype, runs the adversarial suite of the accuracy
tests (tests/adversarial.py) through

* ``fastloss``            -- the fused kernels,
* ``fastloss.reference``  -- the plain NumPy twin,
* ``torch``               -- the torch.nn.functional loss (autograd for the
  gradient) computed in the same dtype, when PyTorch is installed,
* ``numpy``               -- the textbook NumPy implementation in the same
  dtype (max-shifted log-sum-exp, TensorFlow's logistic formula, sums in
  the dtype),

and prints the max and median error in ulps of the dtype (tests/oracle.py,
``ulp_error``: a difference of terms is measured against its largest term)
of the reduced loss, the per-sample loss and the gradient elements.  A
benchmark-style report, not a test::

    python bench/accuracy_report.py                  # float32, default suite
    python bench/accuracy_report.py --dtype float64 --slow
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import adversarial  # noqa: E402
import oracle  # noqa: E402

import fastloss  # noqa: E402
import fastloss.reference  # noqa: E402
from fastloss._registry import REGISTRY  # noqa: E402

KINDS = ("reduced", "per_sample", "grad")


# --- the same reductions for the peers ------------------------------------------

def _denominator(function, target, params, sample_weight, n_rows, row_size):
    """The API's "mean" divisor (see API.md), for the peers' own reductions."""
    sw = np.ones(n_rows) if sample_weight is None else np.asarray(sample_weight, float)
    if function in ("softmax_cross_entropy", "softmax_focal_loss") and np.ndim(target) == 1:
        labels = np.asarray(target)
        keep = np.ones(n_rows, bool)
        if params.get("ignore_index") is not None:
            keep = labels != params["ignore_index"]
        w = params.get("class_weight")
        w_y = np.ones(n_rows) if w is None else np.asarray(w)[np.where(keep, labels, 0)]
        return float(np.sum(sw * w_y * keep))
    if REGISTRY[function].family == "elementwise":
        return float(np.sum(sw)) * row_size
    return float(np.sum(sw))


# --- NumPy, the textbook way, in the dtype ---------------------------------------

def _np_softmax_parts(x):
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    return shifted, e / total, shifted - np.log(total), np.log(total)


def _np_per_sample(function, args, params):
    """Per-sample losses and the gradient of their sum, in the input dtype."""
    if function in ("mse", "huber"):
        p, t = args
        r = p - t
        if function == "mse":
            return r * r, 2 * r
        d = p.dtype.type(params.get("delta", 1.0))
        small = np.abs(r) <= d
        return np.where(small, 0.5 * r * r, d * (np.abs(r) - 0.5 * d)), np.clip(r, -d, d)
    if function == "binary_cross_entropy":
        x, t = args
        p_w = params.get("pos_weight")
        pw = x.dtype.type(1) if p_w is None else np.asarray(p_w, x.dtype)
        one = x.dtype.type(1)
        # TensorFlow's weighted_cross_entropy_with_logits formula
        log_weight = one + (pw - one) * t
        loss = (one - t) * x + log_weight * (np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0))
        sigma = one / (one + np.exp(-x))
        return loss, (one - t) * sigma - pw * t * (one - sigma)
    if function in _NP_MORE:
        return _NP_MORE[function](*args, **params)
    if function in ("hinge", "squared_hinge"):
        s, t = args
        if np.all((t == 0) | (t == 1)) and not np.all(t == 1):
            t = 2 * t - 1
        z = np.maximum(s.dtype.type(params.get("margin", 1.0)) - t * s, 0)
        if function == "hinge":
            return z, np.where(z > 0, -t, 0).astype(s.dtype)
        return z * z, -2 * t * z
    x, target = args
    dt = x.dtype
    n_rows, n_classes = x.shape
    shifted, p, log_p, _ = _np_softmax_parts(x)
    if function == "multiclass_hinge":
        rows = np.arange(n_rows)
        q = 2 if params.get("squared") else 1
        s_y = x[rows, target][:, None]
        z = dt.type(params.get("margin", 1.0)) + x - s_y
        z[rows, target] = 0
        if params.get("kind") == "crammer_singer":
            others = np.where(np.arange(n_classes) == target[:, None], -np.inf, x)
            best = np.argmax(others, axis=1)
            keep = np.zeros(x.shape, bool)
            keep[rows, best] = True
            z = np.where(keep, z, 0)
        active = np.maximum(z, 0)
        grad = np.where(active > 0, q * active ** (q - 1), 0).astype(dt)
        grad[rows, target] = -grad.sum(axis=1)
        return (active ** q).sum(axis=1), grad
    if np.ndim(target) == 1:
        t = np.zeros(x.shape, dt)
        keep = np.ones(n_rows, bool)
        if params.get("ignore_index") is not None:
            keep = target != params["ignore_index"]
        t[np.nonzero(keep)[0], target[keep]] = 1
    else:
        t, keep = target.astype(dt), np.ones(n_rows, bool)
    if function == "softmax_focal_loss":
        gamma = dt.type(params.get("gamma", 2.0))
        rows = np.arange(n_rows)
        y = np.where(keep, target, 0)
        p_y, log_p_y = p[rows, y], log_p[rows, y]
        w = params.get("class_weight")
        w_y = np.ones(n_rows, dt) if w is None else np.asarray(w, dt)[y]
        w_y = np.where(keep, w_y, 0).astype(dt)
        one_minus = 1 - p_y
        # d/dx_c of -(1 - p_y)^g log p_y = (g (1 - p_y)^(g-1) p_y log p_y - (1 - p_y)^g)
        #                                  (onehot_c - p_c)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(gamma > 0, gamma * one_minus ** (gamma - 1) * p_y * log_p_y, 0)
        factor = (w_y * (slope - one_minus ** gamma)).astype(dt)[:, None]
        return -w_y * one_minus ** gamma * log_p_y, factor * (t - p)
    if function == "softmax_cross_entropy" and (params.get("z_loss") or params.get("softcap")):
        return _np_cross_entropy_extras(x, t, keep, params)
    if function == "softmax_cross_entropy":
        eps = dt.type(params.get("label_smoothing", 0.0))
        q = (1 - eps) * t + eps / n_classes
        w = params.get("class_weight")
        wq = q if w is None else q * np.asarray(w, dt)
        wq[~keep] = 0
        return -(wq * log_p).sum(axis=1), wq.sum(axis=1, keepdims=True) * p - wq
    if function == "softmax_binary_cross_entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = -(t * log_p + (1 - t) * np.log1p(-p)).sum(axis=1)
            odds = p / (1 - p)
            grad = (p * t.sum(axis=1, keepdims=True) - t + (1 - t) * odds
                    - p * ((1 - t) * odds).sum(axis=1, keepdims=True))
        return loss, grad
    if function == "kl_divergence":
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(t > 0, t * (np.log(t) - log_p), 0)
        return terms.sum(axis=1), t.sum(axis=1, keepdims=True) * p - t
    raise KeyError(function)


def _np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_l1(p, t):
    r = p - t
    return np.abs(r), np.sign(r)


def _np_smooth_l1(p, t, beta=1.0):
    if beta == 0:
        return _np_l1(p, t)
    r = p - t
    b = p.dtype.type(beta)
    small = np.abs(r) < b
    return (np.where(small, 0.5 * r * r / b, np.abs(r) - 0.5 * b),
            np.where(small, r / b, np.sign(r)))


def _np_log_cosh(p, t):
    # Keras's form: r + softplus(-2 r) - log 2
    r = p - t
    return r + _np_softplus(-2 * r) - p.dtype.type(np.log(2)), np.tanh(r)


def _np_pinball(p, t, quantile=0.5):
    r = t - p
    q = p.dtype.type(quantile)
    return np.maximum(q * r, (q - 1) * r), np.where(r >= 0, -q, 1 - q).astype(p.dtype)


def _np_poisson_nll(x, t, log_input=True, full=False, eps=1e-8):
    # torch's formula
    if log_input:
        rate = np.exp(x)
        loss, grad = rate - t * x, rate - t
    else:
        loss, grad = x - t * np.log(x + x.dtype.type(eps)), 1 - t / (x + x.dtype.type(eps))
    if full:
        with np.errstate(divide="ignore", invalid="ignore"):
            stirling = t * np.log(t) - t + 0.5 * np.log(2 * np.pi * t)
        loss = loss + np.where(t > 1, stirling, 0).astype(x.dtype)
    return loss, grad


def _np_sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0):
    # torchvision's formula, differentiated by hand
    s = _np_sigmoid(x)
    ce = (1 - t) * x + _np_softplus(-x)
    p_t = s * t + (1 - s) * (1 - t)
    g = x.dtype.type(gamma)
    a_t = 1 if alpha < 0 else alpha * t + (1 - alpha) * (1 - t)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(g > 0, g * (1 - p_t) ** (g - 1) * ce * s * (1 - s) * (2 * t - 1), 0)
    return a_t * ce * (1 - p_t) ** g, (a_t * ((s - t) * (1 - p_t) ** g - slope)).astype(x.dtype)


def _np_gaussian_nll(mean, t, var, full=False, eps=1e-6):
    # torch's formula: the clamp passes the gradient for var straight through
    var = np.asarray(var, mean.dtype)
    if var.ndim == mean.ndim - 1:                       # broadcast over the last dimension
        var = var[..., None]
    v = np.broadcast_to(np.maximum(var, mean.dtype.type(eps)), mean.shape)
    r = mean - t
    loss = 0.5 * (np.log(v) + r * r / v)
    if full:
        loss = loss + mean.dtype.type(0.5 * np.log(2 * np.pi))
    return loss, (r / v, 0.5 * (1 / v - r * r / (v * v)))


_NP_MORE = {"l1": _np_l1, "smooth_l1": _np_smooth_l1, "log_cosh": _np_log_cosh,
            "pinball": _np_pinball, "poisson_nll": _np_poisson_nll,
            "sigmoid_focal_loss": _np_sigmoid_focal_loss, "gaussian_nll": _np_gaussian_nll}


def _np_cross_entropy_extras(x, t, keep, params):
    """Cross-entropy with softcap and z-loss, the textbook way (chain rule by hand)."""
    dt = x.dtype
    cap = params.get("softcap")
    if cap is not None:
        tanh = np.tanh(x / dt.type(cap))
        x = dt.type(cap) * tanh
    shifted, p, log_p, log_total = _np_softmax_parts(x)
    lse = x.max(axis=1, keepdims=True) + log_total
    eps = dt.type(params.get("label_smoothing", 0.0))
    q = (1 - eps) * t + eps / x.shape[1]
    w = params.get("class_weight")
    wq = q if w is None else q * np.asarray(w, dt)
    wq[~keep] = 0
    z = dt.type(params.get("z_loss", 0.0)) * keep[:, None]
    loss = -(wq * log_p).sum(axis=1) + (z * lse * lse)[:, 0]
    grad = (wq.sum(axis=1, keepdims=True) + 2 * z * lse) * p - wq
    if cap is not None:
        grad = grad * (1 - tanh * tanh)
    return loss, grad.astype(dt)


def _np_grad_scaled(grad, w):
    """A gradient (or the tuple of a loss with several) times per-sample weights."""
    if isinstance(grad, tuple):
        return tuple(_np_grad_scaled(g, w) for g in grad)
    return grad * (w if grad.ndim == 1 else w[:, None])


def _np_grad_divided(grad, d):
    if isinstance(grad, tuple):
        return tuple(_np_grad_divided(g, d) for g in grad)
    return (grad / d).astype(grad.dtype)


def numpy_implementation(function):
    """The textbook NumPy implementation with the API's calling convention."""
    if function in oracle.UTILITIES:
        def utility(x):
            shifted, p, log_p, log_total = _np_softmax_parts(x)
            return {"logsumexp": (x.max(axis=1, keepdims=True) + log_total)[:, 0],
                    "softmax": p, "log_softmax": log_p}[function]
        return utility

    def implementation(*args, sample_weight=None, reduction="mean", **params):
        loss, grad = _np_per_sample(function, args, params)
        dt = args[0].dtype
        if sample_weight is not None:
            w = np.asarray(sample_weight, dt)
            loss = loss * (w if loss.ndim == 1 else w[:, None])
            grad = _np_grad_scaled(grad, w)
        if reduction == "none":
            return fastloss.LossGrad(loss, grad)
        total = loss.sum(dtype=dt)                      # a sum in the dtype, as NumPy does
        if reduction == "sum":
            return fastloss.LossGrad(float(total), grad)
        row_size = 1 if args[0].ndim == 1 else args[0].shape[1]
        d = _denominator(function, args[1], params, sample_weight, args[0].shape[0], row_size)
        return fastloss.LossGrad(float(total / dt.type(d)), _np_grad_divided(grad, dt.type(d)))
    return implementation


# --- PyTorch: torch.nn.functional and autograd, in the dtype ----------------------

def torch_implementation(function):
    """torch.nn.functional (autograd gradients), or None without PyTorch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None

    if function in oracle.UTILITIES:
        def utility(x):
            t = torch.from_numpy(np.ascontiguousarray(x))
            out = {"logsumexp": lambda: torch.logsumexp(t, 1),
                   "softmax": lambda: torch.softmax(t, 1),
                   "log_softmax": lambda: torch.log_softmax(t, 1)}[function]()
            return out.numpy()
        return utility

    def per_sample(args, params):
        a = torch.from_numpy(np.ascontiguousarray(args[0])).requires_grad_(True)
        dt = a.dtype
        target = args[1]
        if function in ("mse", "huber", "binary_cross_entropy", "hinge", "squared_hinge"):
            t = torch.from_numpy(np.ascontiguousarray(target))
            if function == "mse":
                return a, F.mse_loss(a, t, reduction="none")
            if function == "huber":
                return a, F.huber_loss(a, t, reduction="none", delta=params.get("delta", 1.0))
            if function == "binary_cross_entropy":
                pw = params.get("pos_weight")
                if pw is not None:
                    pw = torch.as_tensor(np.broadcast_to(pw, a.shape[1:] or (1,)).copy(),
                                         dtype=dt)
                return a, F.binary_cross_entropy_with_logits(a, t, pos_weight=pw,
                                                             reduction="none")
            if bool(((t == 0) | (t == 1)).all()) and not bool((t == 1).all()):
                t = 2 * t - 1
            z = torch.clamp(params.get("margin", 1.0) - t * a, min=0)
            return a, z if function == "hinge" else z * z
        if function in _TORCH_MORE:
            return a, _TORCH_MORE[function](a, *args[1:], **params)
        n_classes = a.shape[1]
        if function == "multiclass_hinge":
            y = torch.from_numpy(np.asarray(target, np.int64))
            q = 2 if params.get("squared") else 1
            if params.get("kind") == "crammer_singer":
                s_y = a.gather(1, y[:, None])[:, 0]
                others = a.masked_fill(F.one_hot(y, n_classes).bool(), -torch.inf)
                z = torch.clamp(params.get("margin", 1.0) + others.max(1).values - s_y, min=0)
                return a, z ** q
            # torch's multi_margin_loss is Weston-Watkins divided by C
            return a, F.multi_margin_loss(a, y, p=q, margin=params.get("margin", 1.0),
                                          reduction="none") * n_classes
        if function == "softmax_focal_loss":
            y = torch.from_numpy(np.asarray(target, np.int64))
            ignore = params.get("ignore_index")
            keep = torch.ones_like(y, dtype=torch.bool) if ignore is None else y != ignore
            y = torch.where(keep, y, 0)
            log_p_y = F.log_softmax(a, 1).gather(1, y[:, None])[:, 0]
            w = params.get("class_weight")
            w_y = torch.ones((), dtype=dt) if w is None else torch.as_tensor(w, dtype=dt)[y]
            loss = -w_y * (1 - log_p_y.exp()) ** params.get("gamma", 2.0) * log_p_y
            return a, torch.where(keep, loss, 0)
        if function == "softmax_cross_entropy" and (params.get("z_loss")
                                                    or params.get("softcap")):
            return a, _torch_cross_entropy_extras(a, target, params)
        if function == "softmax_cross_entropy":
            w = params.get("class_weight")
            w = None if w is None else torch.as_tensor(w, dtype=dt)
            if np.ndim(target) == 1:
                t = torch.from_numpy(np.asarray(target, np.int64))
                ignore = params.get("ignore_index")
                return a, F.cross_entropy(a, t, weight=w, reduction="none",
                                          ignore_index=-100 if ignore is None else ignore,
                                          label_smoothing=params.get("label_smoothing", 0.0))
            t = torch.from_numpy(np.ascontiguousarray(target))
            return a, F.cross_entropy(a, t, weight=w, reduction="none",
                                      label_smoothing=params.get("label_smoothing", 0.0))
        if np.ndim(target) == 1:
            t = F.one_hot(torch.from_numpy(np.asarray(target, np.int64)), n_classes).to(dt)
        else:
            t = torch.from_numpy(np.ascontiguousarray(target))
        log_p = F.log_softmax(a, 1)
        if function == "kl_divergence":
            return a, F.kl_div(log_p, t, reduction="none").sum(1)
        if function == "softmax_binary_cross_entropy":
            return a, -(t * log_p + (1 - t) * torch.log1p(-torch.exp(log_p))).sum(1)
        raise KeyError(function)

    def _torch_cross_entropy_extras(a, target, params):
        """Cross-entropy with softcap and z-loss, the formula written in torch."""
        cap = params.get("softcap")
        x = a if cap is None else cap * torch.tanh(a / cap)
        w = params.get("class_weight")
        w = None if w is None else torch.as_tensor(w, dtype=a.dtype)
        smoothing = params.get("label_smoothing", 0.0)
        if np.ndim(target) == 1:
            y = torch.from_numpy(np.asarray(target, np.int64))
            ignore = params.get("ignore_index")
            ignore = -100 if ignore is None else ignore
            rows = F.cross_entropy(x, y, weight=w, reduction="none", ignore_index=ignore,
                                   label_smoothing=smoothing)
            kept = (y != ignore).to(a.dtype)
        else:
            rows = F.cross_entropy(x, torch.from_numpy(np.ascontiguousarray(target)),
                                   weight=w, reduction="none", label_smoothing=smoothing)
            kept = torch.ones_like(rows)
        return rows + params.get("z_loss", 0.0) * kept * torch.logsumexp(x, 1) ** 2

    def implementation(*args, sample_weight=None, reduction="mean", **params):
        a, loss = per_sample(args, params)
        if sample_weight is not None:
            w = torch.as_tensor(sample_weight, dtype=a.dtype)
            loss = loss * (w if loss.ndim == 1 else w[:, None])
        if reduction == "none":
            loss.sum().backward()
            return fastloss.LossGrad(loss.detach().numpy(), a.grad.numpy())
        total = loss.sum()
        if reduction == "mean":
            row_size = 1 if a.ndim == 1 else a.shape[1]
            total = total / _denominator(function, args[1], params, sample_weight, a.shape[0],
                                         row_size)
        total.backward()
        return fastloss.LossGrad(float(total.detach()), a.grad.numpy())
    return implementation


def _torch_more():
    """torch's own function where it has one, else the textbook formula in torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}

    def tensor(v, like):
        return torch.as_tensor(np.ascontiguousarray(v), dtype=like.dtype)

    def pinball(a, t, quantile=0.5):
        r = tensor(t, a) - a
        # (where, not maximum: the API's gradient -q at r = 0, not torch's tie split)
        return torch.where(r >= 0, quantile * r, (quantile - 1) * r)

    def log_cosh(a, t):
        r = a - tensor(t, a)
        return r + F.softplus(-2 * r) - math.log(2)

    def focal(a, t, alpha=0.25, gamma=2.0):
        # torchvision.ops.sigmoid_focal_loss's formula
        t = tensor(t, a)
        p = torch.sigmoid(a)
        ce = F.binary_cross_entropy_with_logits(a, t, reduction="none")
        loss = ce * (1 - (p * t + (1 - p) * (1 - t))) ** gamma
        return loss if alpha < 0 else (alpha * t + (1 - alpha) * (1 - t)) * loss

    def gaussian(a, t, var, full=False, eps=1e-6):
        return F.gaussian_nll_loss(a, tensor(t, a), tensor(var, a), full=full, eps=eps,
                                   reduction="none")

    return {
        "l1": lambda a, t: F.l1_loss(a, tensor(t, a), reduction="none"),
        "smooth_l1": lambda a, t, beta=1.0: F.smooth_l1_loss(a, tensor(t, a), beta=beta,
                                                             reduction="none"),
        "log_cosh": log_cosh, "pinball": pinball,
        "poisson_nll": lambda a, t, log_input=True, full=False, eps=1e-8: F.poisson_nll_loss(
            a, tensor(t, a), log_input=log_input, full=full, eps=eps, reduction="none"),
        "sigmoid_focal_loss": focal, "gaussian_nll": gaussian}


_TORCH_MORE = _torch_more()


# --- the report ---------------------------------------------------------------------

def implementations(function):
    found = {"fastloss": getattr(fastloss, function, None),
             "reference": getattr(fastloss.reference, function, None),
             "torch": torch_implementation(function),
             "numpy": numpy_implementation(function)}
    return {name: fn for name, fn in found.items() if fn is not None}


def measure_function(function, dtype, slow=False):
    """{implementation: {kind: all errors}} over the suite of one function."""
    backend = oracle.backend_for(dtype)
    models = {}
    results = {}
    for call in adversarial.calls(function, dtype):
        if call.slow and not slow:
            continue
        model = None
        if call.logits_case is not None:
            if call.logits_case not in models:
                models[call.logits_case] = oracle.row_model(call.args[0], backend)
            model = models[call.logits_case]
        exact = oracle.exact_for(function, call, backend, model)
        for name, fn in implementations(function).items():
            try:
                found = oracle.errors_of(function, fn, call, exact, dtype)
            except Exception as error:            # a peer that rejects the input
                print(f"  {name} failed on {function} {call.name}: {error!r}", file=sys.stderr)
                found = {}
            for kind, pairs in found.items():
                bucket = results.setdefault(name, {}).setdefault(kind, [])
                bucket.extend(np.ravel(errors) for _, errors in pairs)
    return {name: {kind: np.concatenate(v) for kind, v in kinds.items()}
            for name, kinds in results.items()}


def _cell(errors):
    if errors is None or errors.size == 0:
        return "-"
    worst, median = np.max(errors), np.median(errors)
    fmt = lambda v: "inf" if np.isinf(v) else f"{v:.3g}"      # noqa: E731
    return f"{fmt(worst)} / {fmt(median)}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], nargs="+",
                        default=["float32"])
    parser.add_argument("--slow", action="store_true",
                        help="include the float64 cases that need minutes of mpmath")
    parser.add_argument("--functions", nargs="+", default=adversarial.FUNCTIONS)
    args = parser.parse_args(argv)
    names = ["fastloss", "reference", "torch", "numpy"]
    for dtype in args.dtype:
        rows = []
        for function in args.functions:
            start = time.perf_counter()
            results = measure_function(function, np.dtype(dtype), args.slow)
            print(f"  measured {function} {dtype} in {time.perf_counter() - start:.1f} s",
                  file=sys.stderr)
            for kind in KINDS:
                if any(kind in r for r in results.values()):
                    rows.append((function, kind,
                                 [_cell(results.get(n, {}).get(kind)) for n in names]))
        print(f"\n## ulp error, {dtype}: max / median over the adversarial suite\n")
        header = ["function", "value"] + names
        widths = [max(len(h), *(len(str(r[i] if i < 2 else r[2][i - 2])) for r in rows))
                  for i, h in enumerate(header)]
        print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for function, kind, cells in rows:
            row = [function, kind] + cells
            print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
