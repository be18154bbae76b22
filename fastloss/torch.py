"""fastloss.torch: drop-in replacements for ``torch.nn.functional`` losses on CPU.

Each function has exactly the signature, defaults and semantics of its
namesake in ``torch.nn.functional`` (``ignore_index=-100``, the deprecated
``size_average``/``reduce`` included), and each module those of its namesake
in ``torch.nn`` (it subclasses it, so ``isinstance`` and ``state_dict`` work)::

    import fastloss.torch as flt
    loss = flt.cross_entropy(logits, labels)     # instead of F.cross_entropy
    loss.backward()

How it works: the loss is a ``torch.autograd.Function``.  Its forward pass
calls one fused fastloss kernel, which computes the loss *and* the gradient
with respect to the input in one pass over the data, through zero-copy NumPy
views of the tensors.  The gradient is stored; the backward pass only scales
it by ``grad_output``, and returns it as it is when ``grad_output`` is 1 (the
usual ``loss.backward()``).  Torch's own cross-entropy writes the
log-softmax in forward, keeps it, and in backward reads it to write a second
(N, C) buffer; the fused path reads the logits once, writes the gradient
once and keeps that one (N, C) buffer.  The kernels run on
``torch.get_num_threads()`` threads.

When the kernels do not cover a call, torch's own function computes it, with
the same result torch gives (errors included):

* tensors not on the CPU (CUDA, MPS, meta, ...), and dtypes other than
  float32 and float64 (float16, bfloat16, integers);
* targets, ``weight`` or ``pos_weight`` that require a gradient, or whose
  dtype differs from the input's (torch would promote); class labels of a
  dtype other than int64;
* double backward (``create_graph=True``): the backward pass then
  recomputes the gradient with torch's own function, so that it can be
  differentiated again;
* shapes the kernels do not take: cross-entropy and multi-margin over
  (N, C, d1, ...) inputs, target shapes that differ from the input's
  (broadcasting), a BCE ``weight`` that varies along the last axis together
  with a per-column ``pos_weight``;
* a "mean" over nothing (no element, every target ignored, total weight 0),
  which torch defines as NaN; and any argument the kernels reject (a label
  out of range, a negative margin, an unknown reduction), so that torch
  raises its own error;
* tensor subclasses with ``__torch_function__``, functorch transforms
  (vmap, grad) and ``torch.compile`` tracing.

This module is the only part of fastloss that imports torch.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn import _reduction

import fastloss

__all__ = [
    "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "huber_loss",
    "multi_margin_loss",
    "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "HuberLoss", "MultiMarginLoss",
]

_FAST_DTYPES = (torch.float32, torch.float64)
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_REDUCTIONS = ("mean", "sum", "none")


class _Unsupported(Exception):
    """Raised by a fast path for a call the kernels do not cover."""


# --- the autograd Function shared by every loss ------------------------------

class _FusedLoss(torch.autograd.Function):
    """A loss whose gradient was computed together with its value.

    forward(input, (loss, grad), torch_loss) returns ``loss``; backward returns
    ``grad`` scaled by grad_output (broadcast over the trailing dimensions of
    ``grad`` that ``loss`` lacks, e.g. the classes of a per-sample loss).
    ``torch_loss(input)`` recomputes the loss with torch's own function, used
    only for a differentiable backward (double backward).
    """

    @staticmethod
    def forward(ctx, input, loss_and_grad, torch_loss):
        # A tuple, so that autograd does not take loss and grad for inputs.
        loss, grad = loss_and_grad
        ctx.save_for_backward(grad)
        ctx.loss_dim = loss.dim()
        # Kept for double backward only; the version tells whether it changed.
        ctx.input = input
        ctx.input_version = input._version
        ctx.torch_loss = torch_loss
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            return _differentiable_backward(ctx, grad_output), None, None
        (grad,) = ctx.saved_tensors
        if ctx.loss_dim == 0:
            if grad_output.item() == 1.0:   # loss.backward(): the gradient as it is
                return grad, None, None
            return grad * grad_output, None, None
        extra = grad.dim() - ctx.loss_dim
        return grad * grad_output.reshape(grad_output.shape + (1,) * extra), None, None


def _differentiable_backward(ctx, grad_output):
    """create_graph=True: the gradient as a differentiable function of the input."""
    input = ctx.input
    if input._version != ctx.input_version:
        raise RuntimeError("fastloss.torch: the input of a loss was modified in place "
                           "before a double backward through it")
    with torch.enable_grad():
        loss = ctx.torch_loss(input)
        (grad,) = torch.autograd.grad(loss, input, grad_output, create_graph=True)
    return grad


def _run(input, fast, torch_loss, tensors):
    """The loss of ``input``: by the fused kernels when they cover the call, else torch's.

    ``fast(need_grad)`` returns (loss, grad) as tensors (grad None when not
    needed) or raises _Unsupported; ``torch_loss(input)`` is torch's own loss;
    ``tensors`` are the other tensor arguments (None allowed).
    """
    if not _covered(input, tensors):
        return torch_loss(input)
    need_grad = input.requires_grad and torch.is_grad_enabled()
    try:
        loss, grad = fast(need_grad)
    except (_Unsupported, ValueError, TypeError):
        return torch_loss(input)
    if not need_grad:
        return loss
    return _FusedLoss.apply(input, (loss, grad), torch_loss)


def _covered(input, tensors):
    """Whether the fused kernels may compute this call (see the module docstring)."""
    every = (input,) + tuple(t for t in tensors if t is not None)
    for t in every:
        if not isinstance(t, torch.Tensor):
            return False
    if input.dtype not in _FAST_DTYPES or torch.overrides.has_torch_function(every):
        return False
    grad_on = torch.is_grad_enabled()
    for t in every:
        # Strided CPU tensors only: .numpy() refuses the others.
        if not t.is_cpu or t.layout != torch.strided or t.is_complex() \
                or _is_functorch_tensor(t):
            return False
        if grad_on and t is not input and t.requires_grad:
            return False
    return not _is_compiling()


def _is_compiling():
    compiler = getattr(torch, "compiler", None)
    return compiler is not None and hasattr(compiler, "is_compiling") and \
        compiler.is_compiling()


def _is_functorch_tensor(t):
    check = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return check is not None and check(t)


def _numpy(t):
    """A zero-copy NumPy view of a CPU tensor (torch's negation bit resolved)."""
    return t.detach().resolve_neg().numpy()


def _as_float64(t):
    return np.asarray(_numpy(t), dtype=np.float64)


def _class_rows(input, target):
    """A (C,) or (N, C) input as (N, C) NumPy rows, its target as one entry per
    row, and the shape torch gives a "none" loss; _Unsupported when empty."""
    unbatched = input.dim() == 1
    rows = _numpy(input).reshape(1, -1) if unbatched else _numpy(input)
    if rows.shape[0] == 0 or rows.shape[1] == 0:
        raise _Unsupported
    loss_shape = () if unbatched else (rows.shape[0],)
    return rows, (target.reshape(-1) if unbatched else target), loss_shape


def _tensor_result(result, input, loss_shape, grad_shape):
    """fastloss's (loss, grad) as tensors of the input's dtype and torch's shapes."""
    loss, grad = result
    if isinstance(loss, np.ndarray):
        loss = torch.from_numpy(loss).reshape(loss_shape)
    else:
        # from_numpy of a 0-d array costs a tenth of torch.tensor(float).
        loss = torch.from_numpy(np.array(loss, dtype=_NUMPY_DTYPES[input.dtype]))
    if grad is not None:
        grad = torch.from_numpy(grad).reshape(grad_shape)
    return loss, grad


def _reduction_of(size_average, reduce, reduction):
    """torch's reduction string, honouring the deprecated size_average/reduce."""
    if size_average is not None or reduce is not None:
        return _reduction.legacy_get_string(size_average, reduce)
    return reduction


def _check_elementwise(input, target, reduction, *others):
    """Conditions of the elementwise fast paths; raises _Unsupported otherwise."""
    if reduction not in _REDUCTIONS:
        raise _Unsupported
    if target.shape != input.shape or target.dtype != input.dtype:
        raise _Unsupported
    if input.numel() == 0:
        raise _Unsupported      # torch's "mean" over nothing is NaN
    for other in others:
        if other is not None and other.dtype != input.dtype:
            raise _Unsupported


def _expand(t, shape):
    """t broadcast to exactly ``shape`` (a view), or _Unsupported."""
    try:
        if torch.broadcast_shapes(t.shape, shape) != shape:
            raise _Unsupported
    except RuntimeError:
        raise _Unsupported from None
    return t.expand(shape)


def _threads():
    return torch.get_num_threads()


# --- regression --------------------------------------------------------------

def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error, as ``torch.nn.functional.mse_loss``.

    Per element, with r = input - target and w the optional elementwise
    ``weight`` (same shape as input)::

        loss = w r**2,      d loss / d input = 2 w r

    "mean" divides the sum by the number of elements, or by sum(w) when a
    weight is given (torch's definition); "sum" sums; "none" keeps the shape.
    Computed by ``fastloss.mse`` on the flattened tensors.
    """
    reduction = _reduction_of(size_average, reduce, reduction)

    def torch_loss(x):
        # weight only when given: older torch releases have no such argument.
        options = {} if weight is None else {"weight": weight}
        return F.mse_loss(x, target, reduction=reduction, **options)

    def fast(need_grad):
        _check_elementwise(input, target, reduction, weight)
        sample_weight = None
        if weight is not None:
            if weight.shape != input.shape:
                raise _Unsupported
            sample_weight = _as_float64(weight).reshape(-1)
            if reduction == "mean" and sample_weight.sum() == 0:
                raise _Unsupported  # 0 / 0 = NaN in torch
        result = fastloss.mse(_numpy(input).reshape(-1), _numpy(target).reshape(-1),
                              sample_weight=sample_weight, reduction=reduction,
                              grad=need_grad, n_threads=_threads())
        return _tensor_result(result, input, input.shape, input.shape)

    return _run(input, fast, torch_loss, (target, weight))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss, as ``torch.nn.functional.huber_loss``.

    Per element, with r = input - target and w the optional elementwise
    ``weight``::

        loss = w * (0.5 r**2 if |r| <= delta else delta (|r| - delta / 2))
        d loss / d input = w clip(r, -delta, delta)

    "mean" divides the sum by the number of elements (with or without a
    weight, as torch does).  Computed by ``fastloss.huber``.
    """

    def torch_loss(x):
        options = {} if weight is None else {"weight": weight}
        return F.huber_loss(x, target, reduction=reduction, delta=delta, **options)

    def fast(need_grad):
        _check_elementwise(input, target, reduction, weight)
        sample_weight, kind = None, reduction
        if weight is not None:
            if weight.shape != input.shape:
                raise _Unsupported
            sample_weight = _as_float64(weight).reshape(-1)
            if reduction == "mean":
                # torch's weighted mean is sum(w l) / numel, fastloss's sum(w l) / sum(w).
                sample_weight = sample_weight / input.numel()
                kind = "sum"
        result = fastloss.huber(_numpy(input).reshape(-1), _numpy(target).reshape(-1),
                                delta=delta, sample_weight=sample_weight, reduction=kind,
                                grad=need_grad, n_threads=_threads())
        return _tensor_result(result, input, input.shape, input.shape)

    return _run(input, fast, torch_loss, (target, weight))


# --- binary classification -----------------------------------------------------

def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy from logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element, with x the logit, t the target, w the ``weight`` (broadcast
    to the input's shape) and pw the ``pos_weight`` (broadcast along the last
    axis)::

        loss = -w (pw t log sigma(x) + (1 - t) log(1 - sigma(x)))
        d loss / d x = w ((1 - t) sigma(x) - pw t sigma(-x))

    "mean" divides the sum by the number of elements.  Computed by
    ``fastloss.binary_cross_entropy``: flattened when pos_weight is a single
    number, else as rows of the last axis with one weight per row.
    """
    reduction = _reduction_of(size_average, reduce, reduction)

    def torch_loss(x):
        return F.binary_cross_entropy_with_logits(x, target, weight, reduction=reduction,
                                                  pos_weight=pos_weight)

    def fast(need_grad):
        _check_elementwise(input, target, reduction, weight, pos_weight)
        shape, numel = input.shape, input.numel()
        if pos_weight is None or pos_weight.numel() == 1:
            # Every element alike: one flat vector, an elementwise weight.
            view = (numel,)
            if pos_weight is not None and pos_weight.dim() > input.dim():
                raise _Unsupported  # torch broadcasts the result to more dimensions
            pw = None if pos_weight is None else float(pos_weight.reshape(()))
            sample_weight = None
            if weight is not None:
                sample_weight = _as_float64(_expand(weight, shape)).reshape(-1)
        else:
            # One pos_weight per column of the last axis: rows of that axis,
            # which the kernel can only weight row by row.
            if input.dim() == 0 or pos_weight.numel() != shape[-1] \
                    or pos_weight.dim() > input.dim():
                raise _Unsupported
            view = (numel // shape[-1], shape[-1])
            pw = _as_float64(pos_weight).reshape(-1)
            sample_weight = None
            if weight is not None:
                if weight.dim() > 0 and weight.shape[-1] != 1:
                    raise _Unsupported
                row_shape = tuple(shape[:-1]) + (1,)
                sample_weight = _as_float64(_expand(weight, row_shape)).reshape(-1)
        kind = reduction
        if sample_weight is not None and reduction == "mean":
            # torch's weighted mean is sum(w l) / numel, fastloss's sum(w l) / (K sum(w)).
            sample_weight = sample_weight / numel
            kind = "sum"
        result = fastloss.binary_cross_entropy(
            _numpy(input).reshape(view), _numpy(target).reshape(view), pos_weight=pw,
            sample_weight=sample_weight, reduction=kind, grad=need_grad,
            n_threads=_threads())
        return _tensor_result(result, input, shape, shape)

    return _run(input, fast, torch_loss, (target, weight, pos_weight))


# --- multiclass ----------------------------------------------------------------

def _labels(target, n_rows):
    """Integer class labels of shape (n_rows,), as np.intp without a copy."""
    if target.dtype != torch.int64 or target.shape != (n_rows,):
        raise _Unsupported
    return _numpy(target)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    With p = softmax(x) over the classes of a row x of logits, and label
    smoothing eps over C classes (q = (1 - eps) onehot(y) + eps / C)::

        loss_i = -sum_c weight_c q_c log p_c
        d loss_i / d x = sum_c weight_c q_c (p - onehot(c))

    Labels equal to ``ignore_index`` contribute nothing.  "mean" over integer
    labels divides by the total weight of the counted rows, and over
    probability targets by N, exactly as torch.  Inputs of shape (N, C) or
    (C,) are computed by ``fastloss.softmax_cross_entropy``; (N, C, d1, ...)
    falls back to torch.
    """
    reduction = _reduction_of(size_average, reduce, reduction)

    def torch_loss(x):
        return F.cross_entropy(x, target, weight, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)

    def fast(need_grad):
        kernel = getattr(fastloss, "softmax_cross_entropy", None)
        if kernel is None or reduction not in _REDUCTIONS or input.dim() not in (1, 2):
            raise _Unsupported
        logits, row_target, loss_shape = _class_rows(input, target)
        n_rows, n_classes = logits.shape
        class_weight = None
        if weight is not None:
            if weight.dtype != input.dtype or weight.shape != (n_classes,):
                raise _Unsupported
            class_weight = _as_float64(weight)
        probabilities = target.dtype.is_floating_point
        if probabilities:
            if target.shape != input.shape or target.dtype != input.dtype:
                raise _Unsupported
            labels = _numpy(target).reshape(logits.shape)
            options = {}
        else:
            labels = _labels(row_target, n_rows)
            options = {"ignore_index": ignore_index}
        result = kernel(logits, labels, class_weight=class_weight,
                        label_smoothing=label_smoothing, reduction=reduction,
                        grad=need_grad, n_threads=_threads(), **options)
        if reduction == "mean" and not probabilities and result.loss == 0.0:
            # torch's mean over no counted weight is 0 / 0 = NaN; fastloss's is
            # 0.0, so only a zero loss needs the denominator checked.
            counted = labels != ignore_index
            total = counted.sum() if class_weight is None \
                else class_weight[labels[counted]].sum()
            if total == 0:
                raise _Unsupported
        return _tensor_result(result, input, loss_shape, input.shape)

    return _run(input, fast, torch_loss, (target, weight))


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None,
                      reduce=None, reduction="mean"):
    """Multiclass hinge loss, as ``torch.nn.functional.multi_margin_loss``.

    Per row x with label y, C classes, q = p in {1, 2} and class weights w::

        loss = w_y / C * sum_{j != y} max(0, margin - x_y + x_j) ** q

    (the Weston-Watkins hinge divided by C).  "mean" divides by N.  Computed by
    ``fastloss.multiclass_hinge(kind="weston_watkins", squared=(p == 2))``
    with w_y / C as sample weights.
    """
    reduction = _reduction_of(size_average, reduce, reduction)

    def torch_loss(x):
        return F.multi_margin_loss(x, target, p=p, margin=margin, weight=weight,
                                   reduction=reduction)

    def fast(need_grad):
        kernel = getattr(fastloss, "multiclass_hinge", None)
        if kernel is None or reduction not in _REDUCTIONS or p not in (1, 2) \
                or input.dim() not in (1, 2):
            raise _Unsupported
        scores, row_target, loss_shape = _class_rows(input, target)
        n_rows, n_classes = scores.shape
        labels = _labels(row_target, n_rows)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise _Unsupported      # torch raises its own error
        # Sample weights w_y / C (/ N for the mean): one kernel pass, torch's scaling.
        scale = 1.0 / n_classes / (n_rows if reduction == "mean" else 1)
        if weight is not None:
            if weight.dtype != input.dtype or weight.shape != (n_classes,):
                raise _Unsupported
            sample_weight = _as_float64(weight)[labels] * scale
        else:
            sample_weight = np.full(n_rows, scale)
        kind = "none" if reduction == "none" else "sum"
        result = kernel(scores, labels, margin=margin, kind="weston_watkins",
                        squared=(p == 2), sample_weight=sample_weight, reduction=kind,
                        grad=need_grad, n_threads=_threads())
        return _tensor_result(result, input, loss_shape, input.shape)

    return _run(input, fast, torch_loss, (target, weight))


# --- nn.Module twins: torch's modules with the fused forward -----------------------

class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`cross_entropy`."""

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computed by :func:`binary_cross_entropy_with_logits`."""

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, self.weight,
                                                pos_weight=self.pos_weight,
                                                reduction=self.reduction)


class MSELoss(torch.nn.MSELoss):
    """``torch.nn.MSELoss`` computed by :func:`mse_loss`."""

    def forward(self, input, target):
        return mse_loss(input, target, reduction=self.reduction)


class HuberLoss(torch.nn.HuberLoss):
    """``torch.nn.HuberLoss`` computed by :func:`huber_loss`."""

    def forward(self, input, target):
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class MultiMarginLoss(torch.nn.MultiMarginLoss):
    """``torch.nn.MultiMarginLoss`` computed by :func:`multi_margin_loss`."""

    def forward(self, input, target):
        return multi_margin_loss(input, target, p=self.p, margin=self.margin,
                                 weight=self.weight, reduction=self.reduction)


# --- fused linear cross-entropy: the output layer and its loss ----------------------

__all__ += ["linear_cross_entropy", "LinearCrossEntropyLoss"]

import contextlib  # noqa: E402  (kept in this section)

from fastloss._linear_cross_entropy import run_chunks  # noqa: E402
from fastloss._linear_validation import check_unimplemented, prepare_linear  # noqa: E402


class _LinearCrossEntropy(torch.autograd.Function):
    """The loss of a linear layer's logits, with gradients for its input, weight and bias.

    forward(input, weight, bias, loss, state) returns ``loss``; ``state`` is a
    tuple (grads, recompute, torch_loss).  ``grads`` are the gradients of a
    scalar loss, computed with it, which backward scales by grad_output; for
    a per-row loss ("none") they are None and backward calls
    ``recompute(row_weights)``, the gradients of sum_i g_i loss_i (one more
    chunked pass, still without the logits).  ``torch_loss(input, weight,
    bias)`` is torch's unfused loss, used for double backward only.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, loss, state):
        ctx.grads, ctx.recompute, ctx.torch_loss = state
        ctx.inputs = (input, weight, bias)
        ctx.versions = tuple(None if t is None else t._version for t in ctx.inputs)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        inputs = ctx.inputs
        if tuple(None if t is None else t._version for t in inputs) != ctx.versions:
            raise RuntimeError("fastloss.torch.linear_cross_entropy: an input was modified "
                               "in place before the backward pass")
        if torch.is_grad_enabled():
            grads = _linear_torch_grads(ctx, grad_output, create_graph=True)
        elif ctx.grads is None:
            grads = ctx.recompute(grad_output)
            if grads is None:       # weights fastloss refuses (NaN, inf): torch's own way
                grads = _linear_torch_grads(ctx, grad_output, create_graph=False)
        elif grad_output.item() == 1.0:     # loss.backward(): the gradients as they are
            grads = ctx.grads
        else:
            grads = tuple(None if g is None else g * grad_output for g in ctx.grads)
        grads = tuple(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad))
        return grads + (None, None)


def _linear_torch_grads(ctx, grad_output, create_graph):
    """The gradients by torch's unfused loss (double backward, and refused weights)."""
    with torch.enable_grad():
        inputs = [t for t in ctx.inputs if t is not None and t.requires_grad]
        loss = ctx.torch_loss(*ctx.inputs)
        found = iter(torch.autograd.grad(loss, inputs, grad_output, create_graph=create_graph))
    return tuple(next(found) if t is not None and t.requires_grad else None
                 for t in ctx.inputs)


class _TorchProducts:
    """The products of fastloss's chunk loop by torch's matmul, on zero-copy views.

    torch's BLAS threads well for every product here, and ``addmm_``
    accumulates grad_weight in place: no (V, D) scratch array.  They run on
    torch's thread count.
    """

    def __init__(self, weight):
        self.weight = torch.from_numpy(weight)

    def threads(self):
        return contextlib.nullcontext()

    def logits(self, h_chunk, out):
        torch.mm(torch.from_numpy(h_chunk), self.weight.T, out=torch.from_numpy(out))

    def grad_hidden(self, g, out):
        torch.mm(torch.from_numpy(g), self.weight, out=torch.from_numpy(out))

    def add_grad_weight(self, g, h_chunk, grad_weight, first):
        g_t, h_chunk = torch.from_numpy(g).T, torch.from_numpy(h_chunk)
        if first:
            torch.mm(g_t, h_chunk, out=torch.from_numpy(grad_weight))
        else:
            torch.from_numpy(grad_weight).addmm_(g_t, h_chunk)


def _fused_linear(hidden, weight, labels, options, sample_weight=None, reduction="mean",
                  grad=True):
    """fastloss.linear_cross_entropy with torch's products (the same checks and loop)."""
    prep = prepare_linear(hidden, weight, labels, options["bias"], options["class_weight"],
                          options["ignore_index"], options["label_smoothing"], 0.0, None,
                          sample_weight, reduction, grad, options["chunk_rows"],
                          options["n_threads"])
    return run_chunks(prep, _TorchProducts(prep.weight))


def _linear_covered(input, weight, target, bias, class_weight):
    """Whether the fused layer may compute this call (see linear_cross_entropy)."""
    every = tuple(t for t in (input, weight, target, bias, class_weight) if t is not None)
    if not all(isinstance(t, torch.Tensor) for t in every):
        return False
    if input.dtype not in _FAST_DTYPES or torch.overrides.has_torch_function(every):
        return False
    if input.dim() != 2 or target.dtype != torch.int64 or target.shape != input.shape[:1]:
        return False
    for t in (weight, bias, class_weight):
        if t is not None and t.dtype != input.dtype:
            return False
    for t in every:
        if not t.is_cpu or t.layout != torch.strided or _is_functorch_tensor(t):
            return False
    if class_weight is not None and class_weight.requires_grad and torch.is_grad_enabled():
        return False
    return not _is_compiling()


def linear_cross_entropy(input, weight, target, bias=None, *, class_weight=None,
                         ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
                         reduction="mean", chunk_rows=None):
    """Cross-entropy of a linear layer's logits, without ever holding the logits.

    The same value and gradients (for input, weight and bias) as::

        F.cross_entropy(F.linear(input, weight, bias), target, weight=class_weight,
                        ignore_index=ignore_index, label_smoothing=label_smoothing,
                        reduction=reduction)

    for input (N, D), weight (V, D) (``torch.nn.Linear(D, V).weight``), bias
    (V,) or None and target (N,) int64 labels; class weights are
    ``class_weight``, since ``weight`` is the projection.  Computed by the
    chunk loop of :func:`fastloss.linear_cross_entropy` on zero-copy views,
    with torch's matrix products: rows in chunks, each chunk's logits made by
    one product into a reused buffer and turned into their gradient in place
    by the fused kernel, the weight's gradient accumulated in place
    (``addmm_``), so the peak memory is one chunk of logits instead of about
    three (N, V) arrays.
    For "mean" and "sum" the gradients are computed in the forward pass and
    backward only scales them; for "none" backward makes one more chunked
    pass with grad_output as row weights.  Products and kernel run on
    ``torch.get_num_threads()`` threads, one after the other.  The products'
    sums depend on the thread count: results are not bit-identical across
    thread counts.

    ``z_loss`` and ``softcap`` must keep their defaults (NotImplementedError
    otherwise: the fused kernel has no such terms yet).  ``chunk_rows``
    overrides the chunk size (see :func:`fastloss.linear_cross_entropy`).

    torch's own unfused functions compute the calls the fused layer does not
    cover, with torch's result and errors: tensors not on the CPU or of a
    dtype other than float32/float64, mixed dtypes, input not 2-D, labels not
    int64, labels out of range, a class_weight that requires a gradient, a
    "mean" over nothing (torch's NaN), tensor subclasses, functorch
    transforms and ``torch.compile`` tracing; and double backward.
    """
    check_unimplemented(z_loss, softcap)

    def torch_loss(x, w, b):
        return F.cross_entropy(F.linear(x, w, b), target, weight=class_weight,
                               ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing)

    if not _linear_covered(input, weight, target, bias, class_weight) \
            or reduction not in _REDUCTIONS:
        return torch_loss(input, weight, bias)
    hidden, projection, labels = _numpy(input), _numpy(weight), _numpy(target)
    options = dict(bias=None if bias is None else _numpy(bias),
                   class_weight=None if class_weight is None else _as_float64(class_weight),
                   ignore_index=ignore_index, label_smoothing=label_smoothing,
                   chunk_rows=chunk_rows, n_threads=_threads())
    parameters = (input, weight) + (() if bias is None else (bias,))
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in parameters)
    scalar = reduction != "none"
    try:
        result = _fused_linear(hidden, projection, labels, options, reduction=reduction,
                               grad=need_grad and scalar)
    except (ValueError, TypeError):
        return torch_loss(input, weight, bias)      # torch raises its own error
    if reduction == "mean" and result.loss == 0.0 and _nothing_counted(labels, options):
        return torch_loss(input, weight, bias)      # torch's 0 / 0 = NaN
    if scalar:
        loss = torch.from_numpy(np.array(result.loss, dtype=_NUMPY_DTYPES[input.dtype]))
    else:
        loss = torch.from_numpy(result.loss)
    if not need_grad:
        return loss

    def recompute(grad_output):
        """The gradients of sum_i g_i loss_i, g = grad_output; None if fastloss refuses g."""
        try:
            again = _fused_linear(hidden, projection, labels, options,
                                  sample_weight=_as_float64(grad_output), reduction="sum")
        except ValueError:
            return None
        return _linear_grad_tensors(again)

    grads = _linear_grad_tensors(result) if scalar else None
    return _LinearCrossEntropy.apply(input, weight, bias, loss, (grads, recompute, torch_loss))


def _linear_grad_tensors(result):
    return tuple(None if g is None else torch.from_numpy(g) for g in result[1:])


def _nothing_counted(labels, options):
    """Whether a "mean" has no counted weight (every label ignored, or class weights 0)."""
    counted = labels != options["ignore_index"]
    class_weight = options["class_weight"]
    total = counted.sum() if class_weight is None else class_weight[labels[counted]].sum()
    return total == 0


class LinearCrossEntropyLoss(torch.nn.Module):
    """The loss of :func:`linear_cross_entropy` as a module that owns no parameters.

    ``LinearCrossEntropyLoss(**options)`` takes the options of
    :func:`linear_cross_entropy` (class_weight, ignore_index=-100,
    label_smoothing, z_loss, softcap, reduction, chunk_rows); its
    ``forward(input, weight, target, bias=None)`` takes the model's
    projection, e.g. ``loss_fn(hidden, model.lm_head.weight, target,
    model.lm_head.bias)``.  ``class_weight`` is a buffer (it follows
    ``.to()`` and is saved in ``state_dict``), not a parameter.
    """

    def __init__(self, *, class_weight=None, ignore_index=-100, label_smoothing=0.0,
                 z_loss=0.0, softcap=None, reduction="mean", chunk_rows=None):
        super().__init__()
        check_unimplemented(z_loss, softcap)
        self.register_buffer("class_weight", class_weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.reduction = reduction
        self.chunk_rows = chunk_rows

    def forward(self, input, weight, target, bias=None):
        return linear_cross_entropy(input, weight, target, bias, class_weight=self.class_weight,
                                    ignore_index=self.ignore_index,
                                    label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                                    softcap=self.softcap, reduction=self.reduction,
                                    chunk_rows=self.chunk_rows)
