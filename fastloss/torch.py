"""fastloss.torch: drop-in replacements for ``torch.nn.functional`` losses on CPU.

Each function has exactly the signature, defaults and semantics of its
namesake in ``torch.nn.functional`` (``sigmoid_focal_loss``: in
``torchvision.ops``) (``ignore_index=-100``, the deprecated
``size_average``/``reduce`` included), and each module those of its namesake
in ``torch.nn`` (it subclasses it, so ``isinstance``, ``state_dict`` and
pickling work)::

    import fastloss.torch as flt
    loss = flt.cross_entropy(logits, labels)     # instead of F.cross_entropy
    loss.backward()

How it works: the forward pass calls one fused fastloss kernel, which
computes the loss *and* the gradient with respect to the input in one pass
over the data, through zero-copy NumPy views of the tensors.  The gradient
is stored; the backward pass only scales it by ``grad_output``, and hands it
over as it is when ``grad_output`` is 1 (the usual ``loss.backward()``), so
that autograd moves it into ``input.grad`` without a copy.  Torch's own
cross-entropy writes the log-softmax in forward, keeps it, and in backward
reads it to write a second (N, C) buffer; the fused path reads the logits
once, writes the gradient once and keeps that one (N, C) buffer.  The
kernels run on ``torch.get_num_threads()`` threads.  ``nll_loss`` and
``kl_div`` (on log-probabilities, whose gradients need no softmax) and
cross-entropy over (N, C, d1, ...) scores (position by position, in the
scores' own layout) have small kernels of their own
(``fastloss._torch_kernels``).

Two paths lead to the kernels:

* eager calls (the usual case) take the leanest one: a
  ``torch.autograd.Function`` applied straight to the kernel's result, with
  the kernels called directly (the NumPy API's validation is replaced by
  checks of the tensors' metadata and one compiled pass over the labels);
* inside ``torch.compile`` each loss is a torch custom operator
  (``fastloss::cross_entropy``, ...) with a fake (shape) implementation and
  its autograd formula, so that ``torch.compile(model, fullgraph=True)``
  runs the fused kernel with no graph break.

One deliberate difference from torch: a cross-entropy row with an infinite
logit that its probability target gives no mass, such as logits
``[-inf, 0, 0]`` with target ``[0, .5, .5]``, has a finite loss and
gradient here (0 log 0 counts as 0: the row's loss is log 2); torch returns
NaN for it.  Cross-entropy rows with a +inf logit, or with every logit
-inf, follow the same rule as fastloss's kernels (the +inf classes share the
probability, a row of -inf is uniform), where torch returns NaN too.

When the kernels do not cover a call, torch's own function computes it, with
the same result torch gives (errors included).  These are the only cases:

* tensors not on the CPU (CUDA, MPS, meta, ...), and dtypes other than
  float32 and float64 (float16, bfloat16, integers);
* targets, ``weight`` or ``pos_weight`` that require a gradient, or whose
  dtype differs from the input's (torch would promote); class labels of a
  dtype other than int64;
* double backward (``create_graph=True``): the backward pass then
  recomputes the gradient with torch's own function, so that it can be
  differentiated again; and forward-mode AD (dual tensors of
  ``torch.autograd.forward_ad``), which torch's functions differentiate;
* shapes the kernels do not take: multi-margin over (N, C, d1, ...)
  inputs, empty inputs, target shapes that differ from the
  input's (broadcasting), a BCE ``weight`` that varies along the last axis
  together with a per-column ``pos_weight``, a ``weight`` or ``pos_weight``
  of a shape torch broadcasts to more dimensions than the input's;
* arguments torch rejects, so that torch raises its own error: an unknown
  reduction, a label out of range, ``label_smoothing`` outside [0, 1],
  ``ignore_index >= 0`` with probability targets, ``p`` other than 1 and 2,
  ``delta <= 0``, an ``mse_loss`` or ``huber_loss`` weight not of the
  input's shape;
* a "mean" over nothing (every target ignored, total weight 0), which torch
  defines as NaN;
* small calls of ``nll_loss``, of ``smooth_l1_loss`` and of cross-entropy
  over (N, C, d1, ...) inputs: fewer than 65,536 elements, where torch's
  native loss costs little more than the autograd floor, less than a Python
  ``autograd.Function``; and eager calls of ``multi_margin_loss`` on fewer
  than 8,192 elements, for the same reason;
* ``kl_div`` with ``reduction="mean"`` inside ``torch.compile`` (torch's
  function gives its warning while traced; fastloss's would break the graph);
* tensor subclasses with ``__torch_function__`` and functorch transforms
  (vmap, grad);
* for ``l1_loss``, ``smooth_l1_loss``, ``gaussian_nll_loss``,
  ``poisson_nll_loss`` and ``sigmoid_focal_loss`` (torchvision's signature,
  default ``reduction="none"`` and checks; torchvision's formula written in
  torch computes its fallbacks): an ``l1_loss`` whose loss is NaN while a
  gradient is wanted (torch's gradient at a NaN residual is 0, the kernel's
  NaN); a ``gaussian_nll_loss`` var of a shape torch rejects, or negative
  (torch's errors); Poisson targets negative, NaN or infinite (which the
  NumPy API refuses, torch computes), and Poisson inputs where the kernel's
  0 * inf = 0 or its float64 exp would differ from torch's formula
  (infinite inputs, log-rates whose exp overflows the dtype, rates x with
  x + eps not positive: flagged by the kernel's own pass); focal targets
  outside [0, 1] or NaN, and gamma < 0.

``sigmoid_focal_loss`` is computed without rounding a probability: where
torchvision's float arithmetic rounds 1 - p_t to 0 (logits beyond about 17
in float32 on the side of their target), its loss and gradient are 0 and
fastloss's the tiny true values.

This module is the only part of fastloss that imports torch.
"""
from __future__ import annotations

import importlib
import warnings

import numpy as np

try:
    import torch
except ModuleNotFoundError as error:           # say how to get it, not just its name
    if error.name != "torch":
        raise
    raise ModuleNotFoundError(
        "fastloss.torch needs PyTorch, which is not installed: "
        "pip install torch (or fastloss[peers], the release it is tested against)",
        name="torch") from None
import torch.nn.functional as F
from torch.autograd import forward_ad
from torch.nn import _reduction

import fastloss
import fastloss._torch_calls as _torch_calls
from fastloss import _dispatch
from fastloss._elementwise import _KERNELS as _ELEMENTWISE_KERNELS
from fastloss._multiclass import _KERNELS as _MULTICLASS_KERNELS
from fastloss._torch_checks import scan_labels
from fastloss._checks import check_cross_entropy_extras as _check_cross_entropy_extras

__all__ = [
    "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "huber_loss",
    "multi_margin_loss", "nll_loss", "kl_div",
    "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "HuberLoss", "MultiMarginLoss",
    "NLLLoss", "KLDivLoss",
]

_FAST_DTYPES = (torch.float32, torch.float64)
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_REDUCTIONS = ("mean", "sum", "none")

# Placeholders for the elementwise kernels' unused array arguments, by torch dtype
# (the multiclass kernels take None; the torch kernels and the spatial paths use these).
_NO_WEIGHT = np.empty(0)
_NO_LABELS = np.empty(0, dtype=np.intp)
_NO_ROWS = {dt: np.empty((0, 0), dtype=_NUMPY_DTYPES[dt]) for dt in _FAST_DTYPES}
_NO_VALUES = {dt: np.empty(0, dtype=_NUMPY_DTYPES[dt]) for dt in _FAST_DTYPES}
_NO_BLOCKS = {dt: np.empty((0, 0, 0), dtype=_NUMPY_DTYPES[dt]) for dt in _FAST_DTYPES}


def _by_torch_dtype(specialisations):
    return {dt: specialisations[np.dtype(_NUMPY_DTYPES[dt])] for dt in _FAST_DTYPES}


_KERNELS = {name: _by_torch_dtype(_ELEMENTWISE_KERNELS[name])
            for name in ("mse", "huber", "binary_cross_entropy")}
_ELEMENTWISE_PARAMETERS = fastloss._dispatch.elementwise_kernels.PARAMETERS   # own arguments
_KERNELS.update({name: _by_torch_dtype(_MULTICLASS_KERNELS[name])
                 for name in ("softmax_cross_entropy", "multiclass_hinge")})
# int64 labels are handed to kernels that read Py_ssize_t.
_LABELS_ARE_INTP = np.dtype(np.intp) == np.dtype(np.int64)
_INT64_LIMIT = 2 ** 63
_INT32_LIMIT = 2 ** 31
# nll_loss, and cross_entropy over (N, C, d1, ...), on fewer elements than this
# are torch's own: its native loss costs little more than the autograd floor
# there, less than any Python autograd.Function (measured: docs/torch.md).
_TORCH_BELOW_ELEMENTS = 1 << 16
# Eager multi_margin_loss on fewer elements than this is torch's own: its native
# loss costs about the autograd floor there (measured: 0.6x-0.9x up to 64 x 64,
# 1.1x at 128 x 50, 1.8x at 256 x 100; bench.torch_matrix).
_MULTI_MARGIN_TORCH_BELOW = 1 << 13

# fastloss.torch's own kernels (nll_loss, kl_div, cross-entropy over
# (N, C, d1, ...) scores in their layout), in the build _dispatch chose.
_OWN_KERNELS = importlib.import_module(
    "fastloss._torch_kernels" + ("_v3" if _dispatch.PATH == _dispatch.X86_64_V3 else ""))
_KERNELS.update({name: {dt: getattr(_OWN_KERNELS, name).__signatures__[kind]
                        for dt, kind in ((torch.float32, "float"), (torch.float64, "double"))}
                 for name in ("nll_loss", "kl_div", "spatial_cross_entropy")})


class _Unsupported(Exception):
    """Raised by a fast path for a call whose data the kernels do not cover
    (a label out of range, a "mean" over nothing): torch computes it."""


# --- the autograd Function shared by every loss (eager calls) ------------------------

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
        # Saved, not kept as an attribute: autograd releases it after backward,
        # so that the gradient it hands on is moved into input.grad, not copied,
        # and keeps it for a second backward through a retained graph.
        ctx.save_for_backward(grad)
        # The loss's dimensions; for double backward, the input and its version
        # (which tells whether it changed) and torch's loss, in one attribute.
        ctx.state = (loss.dim(), input, input._version, torch_loss)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        return _fused_backward(ctx, grad_output)


def _fused_backward(ctx, grad_output):
    """_FusedLoss's backward (also the apply of its backward node: see below)."""
    if _grad_enabled():
        return _differentiable_backward(ctx, grad_output), None, None
    (grad,) = ctx.saved_tensors
    loss_dim = ctx.state[0]
    if loss_dim == 0:
        # A CPU scalar: reading it is a load, not a device synchronisation.
        if grad_output.item() == 1.0:   # loss.backward(): the gradient as it is
            return grad, None, None
        return grad * grad_output, None, None
    return grad * _per_row(grad_output, grad.dim() - loss_dim), None, None


def _per_row(grad_output, extra):
    """A per-row grad_output shaped to broadcast over the ``extra`` dimensions of the
    gradient that the loss lacks: the classes, dimension 1 of (N, C, d1, ...) (the
    last of (N, C))."""
    if extra == 0:
        return grad_output
    shape = grad_output.shape
    return grad_output.reshape(shape[:1] + (1,) * extra + shape[1:])


def _differentiable_backward(ctx, grad_output):
    """create_graph=True: the gradient as a differentiable function of the input."""
    _, input, version, torch_loss = ctx.state
    if input._version != version:
        raise RuntimeError("fastloss.torch: the input of a loss was modified in place "
                           "before a double backward through it")
    with torch.enable_grad():
        loss = torch_loss(input)
        (grad,) = torch.autograd.grad(loss, input, grad_output, create_graph=True)
    return grad


def _bind_backward_node():
    """The apply of _FusedLoss's backward node: _fused_backward itself, without the
    generic apply's Python frames (which look up the user's backward on every
    call; about a microsecond).  Left as torch made it where torch's backward node
    class has no such method."""
    node = _FusedLoss._backward_cls
    generic = getattr(torch.autograd.function.BackwardCFunction, "apply", None)
    if generic is not None and getattr(node, "apply", None) is generic \
            and not getattr(_FusedLoss, "boxed_grads_call", False):
        node.apply = _fused_backward


_bind_backward_node()


def _function_apply():
    """_FusedLoss.apply without its Python wrapper, which costs microseconds.

    The wrapper binds default arguments for functions with setup_context and
    handles functorch transforms and their dead wrappers; _FusedLoss has no
    setup_context, and calls under functorch never get here (_path).
    """
    apply = getattr(torch._C, "_FunctionBase", None)
    apply = getattr(apply, "__dict__", {}).get("apply")
    if apply is None or not hasattr(apply, "__get__"):
        return _FusedLoss.apply
    return apply.__get__(None, _FusedLoss)


_apply_fused = _function_apply()

# The compiled call path of the common small call (fastloss._torch_calls): each
# loss tries it first, outside torch.compile, and takes the Python path below
# when it returns None.
_compiled_call = _torch_calls.elementwise
_compiled_cross_entropy = _torch_calls.cross_entropy
_MSE, _HUBER, _BINARY_CROSS_ENTROPY, _L1, _POISSON_NLL, _SIGMOID_FOCAL_LOSS = (
    _torch_calls.ELEMENTWISE.index(name) for name in (
        "mse", "huber", "binary_cross_entropy", "l1", "poisson_nll", "sigmoid_focal_loss"))


def _never():
    return False


# Bound once: looked up through their modules they cost as much as the test.
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", _never)
_grad_enabled = torch.is_grad_enabled
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", _never)
_functorch_wrapped = getattr(getattr(torch._C, "_functorch", None),
                             "is_functorch_wrapped_tensor", None)


def _is_compiling():
    return _compiling()


def _is_functorch_tensor(t):
    return _functorch_wrapped is not None and _functorch_wrapped(t)


# The path of a call: torch's own function, the eager fused path, or the
# custom operator (while torch.compile traces).
_TORCH, _EAGER, _COMPILED = 0, 1, 2
_Tensor = torch.Tensor
_strided = torch.strided


def _plain(t):
    """A strided CPU tensor without __torch_function__: .numpy() takes it."""
    return (type(t) is _Tensor or (isinstance(t, _Tensor)
                                    and not torch.overrides.has_torch_function((t,)))) \
        and t.is_cpu and t.layout is _strided


def _path(input, target, weight=None, other=None):
    """The path of a call on these tensors (weight and other may be None),
    judged from their metadata alone (see the module docstring).  Written
    out flat: it runs on every call."""
    if not (_plain(input) and _plain(target) and input.dtype in _FAST_DTYPES):
        return _TORCH
    if weight is not None and not _plain(weight) or other is not None and not _plain(other):
        return _TORCH
    compiling = _compiling()
    if (compiling or _grad_enabled()) and (
            target.requires_grad or weight is not None and weight.requires_grad
            or other is not None and other.requires_grad):
        return _TORCH
    if compiling:
        return _COMPILED        # dynamo traces: the metadata above is all there is
    if forward_ad._current_level >= 0 and any(
            t is not None and forward_ad.unpack_dual(t).tangent is not None
            for t in (input, target, weight, other)):
        return _TORCH           # forward-mode AD: torch differentiates
    if _functorch_active() or _is_functorch_tensor(input):
        return _TORCH
    return _EAGER


def _fused(path, fast, op, input, args, torch_loss):
    """The loss of ``input``: the fused kernel's, torch's when the data needs it.

    ``fast(input, *args, need_grad)`` returns (loss, grad) tensors (grad None
    when not needed) or raises _Unsupported; ``op`` is the same computation
    as a torch custom operator, for the _COMPILED path; ``torch_loss(input)``
    is torch's own loss.
    """
    need_grad = input.requires_grad and _grad_enabled()
    if path == _COMPILED:
        return op(input, *args, need_grad)[0]
    try:
        loss, grad = fast(input, *args, need_grad)
    except _Unsupported:
        return torch_loss(input)
    if not need_grad:
        return loss
    return _apply_fused(input, (loss, grad), torch_loss)


def _numpy(t):
    """A zero-copy NumPy view of a CPU tensor (torch's negation bit resolved)."""
    return t.numpy(force=True)


def _as_float64(t):
    """A C-contiguous float64 copy (or view) of a weight tensor, as the kernels read."""
    return np.ascontiguousarray(_numpy(t), dtype=np.float64)


def _weights(t, shape):
    """A weight tensor broadcast to ``shape``, as a contiguous float64 (n,) array."""
    return np.ascontiguousarray(_numpy(t.expand(shape)), dtype=np.float64).reshape(-1)


def _broadcasts_to(t, shape):
    """Whether t broadcasts to exactly ``shape`` (no extra dimensions)."""
    if t.dim() > len(shape):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(t.shape), reversed(shape)))


_threads = torch.get_num_threads


def _torch_loss_and_grad(torch_loss, input, need_grad):
    """torch's loss of input and its gradient (for a custom operator's rare cases)."""
    with torch.enable_grad():
        x = input.detach().requires_grad_(need_grad)
        loss = torch_loss(x)
        if not need_grad:
            return loss.detach(), input.new_empty(0)
        (grad,) = torch.autograd.grad(loss, x, torch.ones_like(loss))
    return loss.detach(), grad


# --- the kernel calls --------------------------------------------------------------
#
# Each *_fast function takes the loss's arguments (already judged covered by
# its *_covered twin) and need_grad, and returns (loss, grad) tensors.  The
# gradient is allocated by NumPy in the input's shape and handed to torch
# without a reshape (a torch reshape costs more than the kernel on a small
# batch); the kernels get NumPy views of the shape they expect.

def _array(t):
    """A C-contiguous NumPy view of t (a copy only if t is not contiguous)."""
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy(force=True)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _scalar(value, numpy_dtype):
    """The 0-d array of a float64 loss in the loss's dtype (rounded once)."""
    if abs(value) > _FLOAT32_MAX and numpy_dtype is np.float32:
        # A float64 sum beyond float32's range: inf, as torch's float32 sum,
        # without NumPy's overflow warning.
        with np.errstate(over="ignore"):
            return np.array(value, numpy_dtype)
    return np.array(value, numpy_dtype)


def _elementwise(name, input, view, target, weight, columns, param, reduction, denominator,
                 need_grad, nan_is_torchs=False):
    """One call of an elementwise kernel on ``view``-shaped (2-D) arrays.

    ``weight`` is a float64 row weight (view[0],) or _NO_WEIGHT, ``columns`` a
    float64 per-column parameter (view[1],) or _NO_WEIGHT; a "mean" divides
    by ``denominator``.  ``param`` and ``columns`` are the kernel's own
    arguments in order (``PARAMETERS``): none for mse, ``param`` for huber,
    both for binary cross-entropy.  With ``nan_is_torchs``, a NaN total with a
    gradient is _Unsupported (torch's gradient differs from the kernel's there).
    """
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    none = _NO_ROWS[dtype]
    loss = np.empty(shape, numpy_dtype) if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if need_grad else None
    params = (param, columns)[:len(_ELEMENTWISE_PARAMETERS[name])]
    total = _KERNELS[name][dtype](
        _array(input).reshape(view), _array(target).reshape(view), weight,
        none if loss is None else loss.reshape(view), none if grad is None else grad.reshape(view),
        none, 1.0 / denominator if reduction == "mean" else 1.0, _threads(), *params)
    if type(total) is tuple:
        # (total, seen targets): torch computes binary cross-entropy with targets
        # outside [0, 1] by the same formula, so fastloss.torch keeps torch's answer
        total = total[0]
    if nan_is_torchs and total != total and grad is not None:
        raise _Unsupported
    if loss is None:
        loss = _scalar(total / denominator if reduction == "mean" else total, numpy_dtype)
    return torch.from_numpy(loss), None if grad is None else torch.from_numpy(grad)


def _mse_fast(input, target, weight, reduction, need_grad):
    view = (input.numel(), 1)
    if weight is None:
        return _elementwise("mse", input, view, target, _NO_WEIGHT, _NO_WEIGHT, 0.0,
                            reduction, view[0], need_grad)
    sample_weight = _weights(weight, input.shape)
    denominator = sample_weight.sum() if reduction == "mean" else 1.0
    if denominator == 0:
        raise _Unsupported              # torch's 0 / 0 = NaN
    return _elementwise("mse", input, view, target, sample_weight, _NO_WEIGHT, 0.0, reduction,
                        denominator, need_grad)


def _huber_fast(input, target, weight, reduction, delta, need_grad):
    # torch's weighted "mean" is sum(w l) / numel, with or without a weight.
    view = (input.numel(), 1)
    sample_weight = _NO_WEIGHT if weight is None else _weights(weight, input.shape)
    return _elementwise("huber", input, view, target, sample_weight, _NO_WEIGHT, delta,
                        reduction, view[0], need_grad)


def _bce_fast(input, target, weight, pos_weight, reduction, need_grad):
    shape, numel = input.shape, input.numel()
    if pos_weight is None or pos_weight.numel() == 1:
        # Every element alike: one flat vector, an elementwise weight.
        view = (numel, 1)
        pw = 1.0 if pos_weight is None else pos_weight.item()
        columns = _NO_WEIGHT
        sample_weight = _NO_WEIGHT if weight is None else _weights(weight, shape)
    else:
        # One pos_weight per column of the last axis: rows of that axis, which
        # the kernel weights row by row (weight constant along it: _bce_covered).
        view = (numel // shape[-1], shape[-1])
        pw, columns = 1.0, _as_float64(pos_weight).reshape(-1)
        sample_weight = _NO_WEIGHT
        if weight is not None:
            sample_weight = _weights(weight, tuple(shape[:-1]) + (1,))
    return _elementwise("binary_cross_entropy", input, view, target, sample_weight, columns,
                        pw, reduction, numel, need_grad)


def _class_labels(target, n_rows, n_classes, has_ignore, ignore_index, class_weight):
    """int64 labels as an (n_rows,) array and torch's "mean" denominator;
    _Unsupported when a label is out of range (torch raises its error)."""
    labels = (target if target.is_contiguous() else target.contiguous()).numpy(force=True)
    if labels.ndim != 1:
        labels = labels.reshape(n_rows)
    first_bad, counted = scan_labels(labels, n_classes, has_ignore, ignore_index, class_weight)
    if first_bad >= 0:
        raise _Unsupported
    return labels, counted


def _cross_entropy_fast(input, target, weight, ignore_index, reduction, label_smoothing,
                        z_loss, softcap, need_grad):
    if input.dim() > 2:
        return _spatial_cross_entropy_fast(input, target, weight, ignore_index, reduction,
                                           label_smoothing, need_grad)
    # Written out flat: at small batches every call of a helper shows.
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    if len(shape) == 2:
        n_rows, n_classes = rows = shape
    else:
        n_rows, n_classes = rows = (1, shape[0])
    logits = (input if input.is_contiguous() else input.contiguous()).numpy(force=True)
    class_weight = None if weight is None else _as_float64(weight)
    if target.dtype == torch.int64:
        labels, denominator = _class_labels(target, n_rows, n_classes, True, ignore_index,
                                            _NO_WEIGHT if class_weight is None else class_weight)
        if reduction == "mean" and denominator == 0:
            raise _Unsupported          # torch's 0 / 0 = NaN
        probabilities, ignored = None, ignore_index
    else:
        labels, denominator, ignored = None, n_rows, None
        probabilities = _array(target).reshape(rows)
    loss = np.empty(shape[:-1], numpy_dtype) if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if need_grad else None
    total = _KERNELS["softmax_cross_entropy"][dtype](
        logits if len(shape) == 2 else logits.reshape(rows), probabilities, labels, None,
        class_weight, label_smoothing, ignored, z_loss, 0.0 if softcap is None else softcap,
        None if loss is None else loss.reshape(n_rows),
        None if grad is None else grad if len(shape) == 2 else grad.reshape(rows), None,
        1.0 / denominator if reduction == "mean" else 1.0, _threads())[0]
    # (the kernel's second result flags negative or NaN probability targets,
    # which torch computes by the same formula: its answer is kept)
    if loss is None:
        loss = _scalar(total / denominator if reduction == "mean" else total, numpy_dtype)
    return torch.from_numpy(loss), None if grad is None else torch.from_numpy(grad)


def _multi_margin_fast(input, target, p, margin, weight, reduction, need_grad):
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    if len(shape) == 2:
        n_rows, n_classes = rows = shape
    else:
        n_rows, n_classes = rows = (1, shape[0])
    scores = _array(input)
    labels, _ = _class_labels(target, n_rows, n_classes, False, 0, _NO_WEIGHT)
    # torch's scaling, w_y / C (/ N for the mean), in the same kernel pass: as
    # sample weights, or without class weights as the gradient's scale (and
    # the sum's) unless the row losses are returned.
    scale = 1.0 / n_classes / (n_rows if reduction == "mean" else 1)
    grad_scale = 1.0
    if weight is not None:
        sample_weight = _as_float64(weight)[labels] * scale
    elif reduction == "none":
        sample_weight = np.full(n_rows, scale)
    else:
        sample_weight, grad_scale = None, scale
    # torch's "none" shape: the target's for a 1-D input ((), or (1,)), else (N,).
    loss = np.empty(target.shape if len(shape) == 1 else (n_rows,), numpy_dtype) \
        if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if need_grad else None
    total = _KERNELS["multiclass_hinge"][dtype](
        scores if len(shape) == 2 else scores.reshape(rows), labels, sample_weight,
        margin, p == 2, False, None if loss is None else loss.reshape(n_rows),
        None if grad is None else grad if len(shape) == 2 else grad.reshape(rows),
        grad_scale, _threads())
    if loss is None:
        loss = _scalar(total * grad_scale, numpy_dtype)
    return torch.from_numpy(loss), None if grad is None else torch.from_numpy(grad)


def _nll_loss_fast(input, target, weight, ignore_index, reduction, need_grad):
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    # (N, C, S): S positions per sample (1 for (N, C), and for (C,) one sample)
    if len(shape) == 1:
        view = (1, shape[0], 1)
    else:
        view = (shape[0], shape[1], input.numel() // (shape[0] * shape[1]))
    loss = np.empty(target.shape, numpy_dtype) if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if need_grad else None
    first_bad, total, denominator = _KERNELS["nll_loss"][dtype](
        _array(input).reshape(view), _array(target).reshape(-1),
        _NO_WEIGHT if weight is None else _as_float64(weight), ignore_index,
        reduction == "mean", _NO_VALUES[dtype] if loss is None else loss.reshape(-1),
        _NO_BLOCKS[dtype] if grad is None else grad.reshape(view), _threads())
    if first_bad >= 0 or reduction == "mean" and denominator == 0:
        raise _Unsupported              # torch's error for the label, its 0 / 0 = NaN
    if loss is None:
        loss = _scalar(total / denominator if reduction == "mean" else total, numpy_dtype)
    return torch.from_numpy(loss), None if grad is None else torch.from_numpy(grad)


def _kl_div_fast(input, target, reduction, log_target, need_grad):
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    n_elements = input.numel()
    if reduction == "mean":
        denominator = n_elements
    elif reduction == "batchmean" and len(shape) > 0:
        denominator = shape[0]
    else:
        denominator = 1
    loss = np.empty(shape, numpy_dtype) if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if need_grad else None
    none = _NO_VALUES[dtype]
    total = _KERNELS["kl_div"][dtype](
        _array(input).reshape(n_elements), _array(target).reshape(n_elements), log_target,
        none if loss is None else loss.reshape(n_elements),
        none if grad is None else grad.reshape(n_elements), 1.0 / denominator, _threads())
    if loss is None:
        loss = _scalar(total / denominator, numpy_dtype)
    return torch.from_numpy(loss), None if grad is None else torch.from_numpy(grad)


# --- cross-entropy over (N, C, d1, ...) ----------------------------------------------
#
# The classes of a position of (N, C, d1, ...) scores are S = d1 * ... apart.
# Two layouts, two kernels, no transpose:
# * scores whose positions are contiguous (the usual layout) go to a kernel of
#   fastloss.torch that computes the softmax of BLOCK positions at a time
#   class plane by class plane, every loop along contiguous memory;
# * channels-last scores (the classes of a position contiguous) are rows of
#   C values as they are: the fused row kernel reads them in place, and their
#   gradient is handed over in the same layout.
# Measured against a transpose into a reused (N * S, C) buffer, the fused row
# kernel and a transpose of the gradient back (docs/torch.md), the plane
# kernel was 1.7x to 4x faster, the transposes alone costing about what
# torch's whole loss does.

def _spatial_cross_entropy_fast(input, target, weight, ignore_index, reduction,
                                label_smoothing, need_grad):
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    n_batch, n_classes = shape[0], shape[1]
    view = (n_batch, n_classes, input.numel() // (n_batch * n_classes))
    class_weight = _NO_WEIGHT if weight is None else _as_float64(weight)
    loss = np.empty(shape[:1] + shape[2:], numpy_dtype) if reduction == "none" else None
    channels_last = None if input.is_contiguous() else input.movedim(1, -1)
    if channels_last is not None and channels_last.is_contiguous():
        total, denominator, grad = _channels_last_cross_entropy(
            channels_last, target, class_weight, label_smoothing, ignore_index, reduction,
            loss, need_grad)
    else:
        # (the kernel checks the labels and counts torch's "mean" denominator)
        labels, probabilities = _NO_LABELS, _NO_BLOCKS[dtype]
        if target.dtype == torch.int64:
            labels = _array(target).reshape(-1)
        else:
            probabilities = _array(target).reshape(view)
        # (torch's allocator aligns to 64 bytes, NumPy's malloc to 16: a cache line
        # split at every other 32-byte vector, 3% of the kernel's time)
        grad = torch.empty(shape, dtype=dtype) if need_grad else None
        first_bad, total, denominator = _KERNELS["spatial_cross_entropy"][dtype](
            _array(input).reshape(view), probabilities, labels, class_weight, ignore_index,
            label_smoothing, reduction == "mean",
            _NO_VALUES[dtype] if loss is None else loss.reshape(-1),
            _NO_BLOCKS[dtype] if grad is None else grad.numpy().reshape(view), _threads())
        if first_bad >= 0 or reduction == "mean" and denominator == 0:
            raise _Unsupported          # torch's error for the label, its 0 / 0 = NaN
    if loss is None:
        loss = _scalar(total / denominator if reduction == "mean" else total, numpy_dtype)
    return torch.from_numpy(loss), grad


def _channels_last_cross_entropy(scores, target, class_weight, label_smoothing,
                                 ignore_index, reduction, loss, need_grad):
    """(total, denominator, gradient tensor) of (N, d1, ..., C) contiguous scores by
    the row kernel (loss, when given, receives the per-position losses); the
    gradient in the input's layout."""
    dtype, shape = scores.dtype, scores.shape
    rows = (scores.numel() // shape[-1], shape[-1])
    labels, probabilities = _NO_LABELS, _NO_ROWS[dtype]
    if target.dtype == torch.int64:
        labels, denominator = _class_labels(target, rows[0], rows[1], True, ignore_index,
                                            class_weight)
        if reduction == "mean" and denominator == 0:
            raise _Unsupported          # torch's 0 / 0 = NaN
    else:
        denominator = rows[0]
        probabilities = _array(target.movedim(1, -1)).reshape(rows)
    grad = np.empty(rows, _NUMPY_DTYPES[dtype]) if need_grad else None
    total = _cross_entropy_rows(dtype, scores.numpy(force=True).reshape(rows), probabilities,
                                labels, class_weight, label_smoothing, ignore_index, loss,
                                grad, 1.0 / denominator if reduction == "mean" else 1.0)
    if grad is None:
        return total, denominator, None
    return total, denominator, torch.from_numpy(grad.reshape(shape)).movedim(-1, 1)


def _cross_entropy_rows(dtype, logits, probabilities, labels, class_weight, label_smoothing,
                        ignore_index, loss, grad, grad_scale):
    """The fused cross-entropy kernel on (n_rows, C) logits (grad may be logits itself)."""
    has_labels = labels is not _NO_LABELS
    return _KERNELS["softmax_cross_entropy"][dtype](
        logits, None if has_labels else probabilities, labels if has_labels else None, None,
        None if class_weight is _NO_WEIGHT or class_weight.shape[0] == 0 else class_weight,
        label_smoothing, ignore_index if has_labels else None, 0.0, 0.0,
        None if loss is None else loss.reshape(-1), grad, None, grad_scale, _threads())[0]


# --- which calls the kernels cover (metadata only) ------------------------------------

def _elementwise_covered(input, target, reduction, weight, *others):
    if reduction not in _REDUCTIONS:
        return False
    if target.shape != input.shape or target.dtype != input.dtype or input.numel() == 0:
        return False                    # broadcasting, promotion, torch's NaN mean
    if weight is not None and (weight.dtype != input.dtype
                               or not _broadcasts_to(weight, input.shape)):
        return False
    return all(t is None or t.dtype == input.dtype for t in others)


def _same_shape_weight(weight, input):
    # torch's mse_loss and huber_loss raise for any other weight shape.
    return weight is None or weight.shape == input.shape


def _bce_covered(input, target, weight, pos_weight, reduction):
    if not _elementwise_covered(input, target, reduction, weight, pos_weight):
        return False
    if pos_weight is None:
        return True
    if pos_weight.dim() > input.dim():
        return False                    # torch broadcasts the result to more dimensions
    if pos_weight.numel() == 1:
        return True
    if input.dim() == 0 or pos_weight.numel() != input.shape[-1]:
        return False
    # Per-column pos_weight: the kernel weights whole rows of the last axis.
    return weight is None or weight.dim() == 0 or weight.shape[-1] == 1


def _class_covered(input, target, weight, reduction):
    """The conditions shared by cross-entropy and multi-margin."""
    if reduction not in _REDUCTIONS or input.dim() not in (1, 2) or input.numel() == 0:
        return False
    return weight is None or (weight.dtype == input.dtype
                              and weight.shape == (input.shape[-1],))


def _labels_covered(input, target):
    """int64 labels, one per row: () or (1,) for a 1-D input, (N,) for (N, C)."""
    if target.dtype != torch.int64 or not _LABELS_ARE_INTP:
        return False
    if input.dim() == 1:
        return target.dim() == 0 or target.shape == (1,)
    return target.shape == (input.shape[0],)


def _cross_entropy_covered(input, target, weight, ignore_index, reduction, label_smoothing):
    shape = input.shape
    if reduction not in _REDUCTIONS or not isinstance(ignore_index, int) \
            or not 0.0 <= label_smoothing <= 1.0:
        return False                    # torch raises (or takes it: its answer)
    if len(shape) > 2:
        return _spatial_covered(input, target, weight, ignore_index)
    if len(shape) not in (1, 2) or shape[0] == 0 or shape[-1] == 0:
        return False
    if weight is not None and (weight.dtype != input.dtype or weight.shape != shape[-1:]):
        return False
    if target.dtype == torch.int64:
        # One label per row: (N,) for (N, C); () for (C,) (torch's (1,) is rare).
        return _LABELS_ARE_INTP and target.shape == shape[:-1]
    # Probabilities; ignore_index >= 0 with them: torch raises.
    return target.dtype == input.dtype and target.shape == shape and ignore_index < 0


def _spatial_covered(input, target, weight, ignore_index):
    """Cross-entropy over (N, C, d1, ...) scores: labels (N, d1, ...) or
    probabilities of the input's shape, a weight (C,), not a small call."""
    shape = input.shape
    if input.numel() < _TORCH_BELOW_ELEMENTS \
            or not -_INT64_LIMIT <= ignore_index < _INT64_LIMIT:
        return False
    if weight is not None and (weight.dtype != input.dtype or weight.shape != shape[1:2]):
        return False
    if shape[1] >= _INT32_LIMIT:
        return False                    # the plane kernel compares labels as int
    if target.dtype == torch.int64:
        return _LABELS_ARE_INTP and target.shape == shape[:1] + shape[2:]
    return target.dtype == input.dtype and target.shape == shape and ignore_index < 0


def _nll_loss_covered(input, target, weight, ignore_index, reduction):
    """Log-probabilities (C,), (N, C) or (N, C, d1, ...) with int64 labels of
    torch's shape ((), (N,), (N, d1, ...)), a weight (C,), not a small call."""
    shape = input.shape
    if reduction not in _REDUCTIONS or not isinstance(ignore_index, int) \
            or not -_INT64_LIMIT <= ignore_index < _INT64_LIMIT:
        return False
    if len(shape) == 0 or input.numel() < _TORCH_BELOW_ELEMENTS \
            or target.dtype != torch.int64 or not _LABELS_ARE_INTP:
        return False
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    if weight is not None and (weight.dtype != input.dtype or weight.shape != (n_classes,)):
        return False
    return target.shape == shape[:1] + shape[2:] if len(shape) > 1 else target.dim() == 0


_KL_DIV_REDUCTIONS = ("mean", "batchmean", "sum", "none")


def _kl_div_covered(input, target, reduction):
    return reduction in _KL_DIV_REDUCTIONS and target.shape == input.shape \
        and target.dtype == input.dtype and input.numel() > 0


def _multi_margin_covered(input, target, p, weight, reduction):
    return p in (1, 2) and _class_covered(input, target, weight, reduction) \
        and _labels_covered(input, target)


# --- regression --------------------------------------------------------------

def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error, as ``torch.nn.functional.mse_loss``.

    Per element, with r = input - target and w the optional elementwise
    ``weight`` (input's shape)::

        loss = w r**2,      d loss / d input = 2 w r

    "mean" divides the sum by the number of elements, or by sum(w) when a
    weight is given (torch's definition); "sum" sums; "none" keeps the shape.
    Computed by the fused kernel of ``fastloss.mse`` on the flattened tensors.
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)

    def torch_loss(x):
        # weight only when given: older torch releases have no such argument.
        options = {} if weight is None else {"weight": weight}
        return F.mse_loss(x, target, reduction=reduction, **options)

    if weight is None and not _compiling():
        loss = _compiled_call(_MSE, input, target, reduction, 0.0, 0.0, 0.0, torch_loss)
        if loss is not None:
            return loss
    path = _path(input, target, weight)
    if path and _elementwise_covered(input, target, reduction, weight) \
            and _same_shape_weight(weight, input):
        return _fused(path, _mse_fast, _mse_op, input, (target, weight, reduction),
                      torch_loss)
    return torch_loss(input)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss, as ``torch.nn.functional.huber_loss``.

    Per element, with r = input - target and w the optional elementwise
    ``weight``::

        loss = w * (0.5 r**2 if |r| <= delta else delta (|r| - delta / 2))
        d loss / d input = w clip(r, -delta, delta)

    "mean" divides the sum by the number of elements (with or without a
    weight, as torch does).  Computed by the fused kernel of ``fastloss.huber``.
    """

    def torch_loss(x):
        options = {} if weight is None else {"weight": weight}
        return F.huber_loss(x, target, reduction=reduction, delta=delta, **options)

    if weight is None and type(delta) is float and delta > 0 and not _compiling():
        loss = _compiled_call(_HUBER, input, target, reduction, delta, 0.0, 0.0, torch_loss)
        if loss is not None:
            return loss
    path = _path(input, target, weight)
    if path and _elementwise_covered(input, target, reduction, weight) \
            and _same_shape_weight(weight, input) and delta > 0:
        return _fused(path, _huber_fast, _huber_op, input,
                      (target, weight, reduction, float(delta)), torch_loss)
    return torch_loss(input)


# --- binary classification -----------------------------------------------------

def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy from logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element, with x the logit, t the target, w the ``weight`` (broadcast
    to the input's shape) and pw the ``pos_weight`` (broadcast along the last
    axis)::

        loss = -w (pw t log sigma(x) + (1 - t) log(1 - sigma(x)))
        d loss / d x = w ((1 - t) sigma(x) - pw t sigma(-x))

    "mean" divides the sum by the number of elements.  Computed by the fused
    kernel of ``fastloss.binary_cross_entropy``: flattened when pos_weight is
    a single number, else as rows of the last axis with one weight per row.
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)

    def torch_loss(x):
        return F.binary_cross_entropy_with_logits(x, target, weight, reduction=reduction,
                                                  pos_weight=pos_weight)

    if weight is None and pos_weight is None and not _compiling():
        loss = _compiled_call(_BINARY_CROSS_ENTROPY, input, target, reduction, 1.0, 0.0, 0.0,
                              torch_loss)
        if loss is not None:
            return loss
    path = _path(input, target, weight, pos_weight)
    if path and _bce_covered(input, target, weight, pos_weight, reduction):
        return _fused(path, _bce_fast, _bce_op, input, (target, weight, pos_weight, reduction),
                      torch_loss)
    return torch_loss(input)


# --- multiclass ----------------------------------------------------------------

def _torch_cross_entropy(x, target, weight, ignore_index, reduction, label_smoothing,
                         z_loss=0.0, softcap=None):
    """torch's cross_entropy, with fastloss's z_loss and softcap written in torch (the
    fallback of :func:`cross_entropy` and its operator; torch's own function without them)."""
    if z_loss == 0.0 and softcap is None:
        return F.cross_entropy(x, target, weight, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    rows = F.cross_entropy(x, target, weight, ignore_index=ignore_index, reduction="none",
                           label_smoothing=label_smoothing)
    labels = not torch.is_floating_point(target)
    kept = target != ignore_index if labels else None
    if z_loss != 0.0:
        z = z_loss * torch.logsumexp(x, dim=1 if x.dim() > 1 else 0) ** 2
        rows = rows + (torch.where(kept, z, torch.zeros_like(z)) if labels else z)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    if not labels:
        return rows.sum() / rows.numel()
    counted = kept.to(rows.dtype) if weight is None else \
        torch.where(kept, weight[torch.where(kept, target, 0)], 0)
    return rows.sum() / counted.sum()


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                  softcap=None):
    """Softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    With p = softmax(x) over the classes of a row x of logits, and label
    smoothing eps over C classes (q = (1 - eps) onehot(y) + eps / C)::

        loss_i = -sum_c weight_c q_c log p_c
        d loss_i / d x = sum_c weight_c q_c (p - onehot(c))

    Labels equal to ``ignore_index`` contribute nothing.  "mean" over integer
    labels divides by the total weight of the counted rows, and over
    probability targets by N (by N d1 ... over (N, C, d1, ...)), exactly as
    torch.  Inputs of shape (N, C) or (C,) are computed by the fused kernel of
    ``fastloss.softmax_cross_entropy``; (N, C, d1, ...) (from 65,536 elements)
    by a kernel of fastloss.torch that takes the softmax of each position
    across the class planes, with no transpose, or, for channels-last
    scores, by the fused row kernel in place.  A row such as logits
    [-inf, 0, 0] with probability target [0, .5, .5] has a finite loss
    (torch: NaN).

    Two keyword-only extras, whose defaults are torch's function (see
    :func:`fastloss.softmax_cross_entropy`): ``z_loss`` adds z_loss lse^2 to
    each counted row's loss (lse the row's log-sum-exp; not weighted by
    ``weight``; "mean" divides it by the same total as the rest), and
    ``softcap`` replaces the logits by softcap tanh(x / softcap) first.  Both
    are in the fused pass of (N, C) and (C,) inputs; (N, C, d1, ...) inputs with either
    go to the same formula written in torch.
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    if z_loss != 0.0 or softcap is not None:
        z_loss, softcap = _check_cross_entropy_extras(z_loss, softcap)

    def torch_loss(x):
        return _torch_cross_entropy(x, target, weight, ignore_index, reduction,
                                    label_smoothing, z_loss, softcap)

    if weight is None and label_smoothing == 0.0 and z_loss == 0.0 and softcap is None \
            and not _compiling():
        loss = _compiled_cross_entropy(input, target, ignore_index, reduction, torch_loss,
                                       _TORCH_BELOW_ELEMENTS)
        if loss is not None:
            return loss
    path = _path(input, target, weight)
    if path and _cross_entropy_covered(input, target, weight, ignore_index, reduction,
                                       label_smoothing) \
            and (input.dim() <= 2 or (z_loss == 0.0 and softcap is None)):
        # (the kernel over (N, C, d1, ...) has neither z_loss nor softcap)
        return _fused(path, _cross_entropy_fast, _cross_entropy_op, input,
                      (target, weight, int(ignore_index), reduction, float(label_smoothing),
                       float(z_loss), softcap), torch_loss)
    return torch_loss(input)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None,
                      reduce=None, reduction="mean"):
    """Multiclass hinge loss, as ``torch.nn.functional.multi_margin_loss``.

    Per row x with label y, C classes, q = p in {1, 2} and class weights w::

        loss = w_y / C * sum_{j != y} max(0, margin - x_y + x_j) ** q

    (the Weston-Watkins hinge divided by C).  "mean" divides by N.  Computed by
    the fused kernel of ``fastloss.multiclass_hinge(kind="weston_watkins",
    squared=(p == 2))`` with w_y / C as sample weights.  Eager calls on fewer
    than 8,192 elements are torch's own (faster there).
    """
    if isinstance(input, _Tensor) and input.numel() < _MULTI_MARGIN_TORCH_BELOW \
            and not _compiling():
        # decided first: a small call pays nothing for the checks
        return F.multi_margin_loss(input, target, p, margin, weight, size_average, reduce,
                                   reduction)
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)

    def torch_loss(x):
        return F.multi_margin_loss(x, target, p=p, margin=margin, weight=weight,
                                   reduction=reduction)

    path = _path(input, target, weight)
    if path and _multi_margin_covered(input, target, p, weight, reduction):
        return _fused(path, _multi_margin_fast, _multi_margin_op, input,
                      (target, int(p), float(margin), weight, reduction), torch_loss)
    return torch_loss(input)


# --- on log-probabilities --------------------------------------------------------

def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    For log-probabilities x of shape (C,), (N, C) or (N, C, d1, ...), labels
    y of shape (), (N,) or (N, d1, ...) and class weights w, at each position::

        loss = -w_y x[y],       d loss / d x = -w_y at y, 0 elsewhere

    Labels equal to ``ignore_index`` contribute nothing.  "mean" divides by
    the total weight of the counted positions, exactly as torch.  Computed by
    a small kernel of fastloss.torch that checks the labels, sums the loss
    and writes the gradient (zeros, and the scatter at the labels, block by
    block) in one call, on the tensors' own layout (no transpose).  There is
    nothing to fuse: torch's backward does the same scatter, so the gain is
    torch's per-call work at large sizes only, and calls on fewer than
    65,536 elements are torch's own (faster there).
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    if isinstance(input, _Tensor) and input.numel() < _TORCH_BELOW_ELEMENTS:
        # decided first: a small call pays nothing for the checks
        return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)

    def torch_loss(x):
        return F.nll_loss(x, target, weight, ignore_index=ignore_index, reduction=reduction)

    if weight is None and not _compiling():
        loss = _compiled_nll_loss(input, target, ignore_index, reduction, torch_loss)
        if loss is not None:
            return loss
    path = _path(input, target, weight)
    if path and _nll_loss_covered(input, target, weight, ignore_index, reduction):
        return _fused(path, _nll_loss_fast, _nll_loss_op, input,
                      (target, weight, int(ignore_index), reduction), torch_loss)
    return torch_loss(input)


# torch's own warning for reduction="mean" (torch.nn.functional.kl_div), word for word.
_KL_DIV_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release.")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Kullback-Leibler divergence, as ``torch.nn.functional.kl_div``.

    ``input`` holds log-probabilities x, ``target`` probabilities t (or their
    logarithms with ``log_target=True``), of the same shape; per element::

        loss = t (log t - x)  (0 where t = 0),  d loss / d x = -t
        loss = exp(t) (t - x)  (log_target),    d loss / d x = -exp(t)

    "batchmean" divides the sum by the batch size input.shape[0] (the
    divergence of each sample's distribution, averaged); "mean" divides it by
    the number of elements, and warns as torch does; "sum" and "none" as
    usual.  Computed by a small fused kernel of fastloss.torch, one pass that
    sums the loss and writes the gradient.  When ``target`` requires a
    gradient, torch's own function computes the call, and inside
    ``torch.compile`` so does "mean" (torch's function warns as it is traced;
    a warning of fastloss's would break the graph).
    """
    if _has_torch_function((input, target)):
        # tensor subclasses: torch's function dispatches (and warns) itself
        return F.kl_div(input, target, size_average, reduce, reduction, log_target)
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    elif reduction == "mean":
        if _compiling():
            # dynamo cannot trace warnings.warn; torch's function, traced, warns
            return F.kl_div(input, target, reduction=reduction, log_target=log_target)
        warnings.warn(_KL_DIV_MEAN_WARNING, stacklevel=2)

    def torch_loss(x):
        return _torch_kl_div(x, target, reduction, log_target)

    path = _path(input, target)
    if path and _kl_div_covered(input, target, reduction):
        return _fused(path, _kl_div_fast, _kl_div_op, input,
                      (target, reduction, bool(log_target)), torch_loss)
    return torch_loss(input)


def _torch_kl_div(input, target, reduction, log_target):
    """torch.nn.functional.kl_div of these arguments, as it computes them, but
    without its warning (kl_div gives it once, before choosing a path)."""
    enum = _reduction.get_enum("sum" if reduction == "batchmean" else reduction)
    loss = torch.kl_div(input, target, enum, log_target=log_target)
    if reduction == "batchmean" and input.dim() != 0:
        loss = loss / input.size()[0]
    return loss


_has_torch_function = torch.overrides.has_torch_function


# --- torch.compile: the fused losses as custom operators --------------------------------
#
# Each operator returns (loss, grad): grad is the gradient the kernel wrote in
# the same pass (an empty tensor when need_grad is false), saved for the
# backward formula grad * grad_loss.  Its fake implementation gives the
# shapes torch.compile traces with.  A call whose data the kernels do not
# cover is computed inside the operator by torch's own function.

def _custom_op(name, schema, fast, torch_function, loss_shape):
    """Define fastloss::name: ``fast`` as its kernel, its fake and autograd.

    ``torch_function(input, *args)`` is torch's loss for the rare data the
    kernels refuse; ``loss_shape(input, *args)`` the shape of the loss.
    """
    @torch.library.custom_op("fastloss::" + name, mutates_args=(), schema=schema)
    def op(input, *args):
        need_grad = args[-1]
        try:
            loss, grad = fast(input, *args)
        except _Unsupported:
            return _torch_loss_and_grad(lambda x: torch_function(x, *args[:-1]), input,
                                        need_grad)
        return loss, grad if need_grad else input.new_empty(0)

    @op.register_fake
    def _(input, *args):
        loss = input.new_empty(loss_shape(input, *args))
        return loss, input.new_empty(input.shape if args[-1] else (0,))

    def setup_context(ctx, inputs, output):
        loss, grad = output
        ctx.loss_dim = loss.dim()
        ctx.save_for_backward(grad)

    n_others = schema.split("->")[0].count(",")     # the arguments after input

    def backward(ctx, grad_loss, _):
        # Traced into the compiled backward, which fuses the scale: no test of
        # grad_loss == 1 (a data-dependent branch) here.
        (grad,) = ctx.saved_tensors
        scaled = grad * _per_row(grad_loss, grad.dim() - ctx.loss_dim)
        return (scaled,) + (None,) * n_others

    op.register_autograd(backward, setup_context=setup_context)
    return op


def _reduced_shape(reduction, none_shape):
    return none_shape if reduction == "none" else ()


_mse_op = _custom_op(
    "mse_loss",
    "(Tensor input, Tensor target, Tensor? weight, str reduction, bool need_grad)"
    " -> (Tensor, Tensor)",
    _mse_fast,
    lambda x, target, weight, reduction: F.mse_loss(
        x, target, reduction=reduction, **({} if weight is None else {"weight": weight})),
    lambda x, target, weight, reduction, need_grad: _reduced_shape(reduction, x.shape))

_huber_op = _custom_op(
    "huber_loss",
    "(Tensor input, Tensor target, Tensor? weight, str reduction, float delta,"
    " bool need_grad) -> (Tensor, Tensor)",
    _huber_fast,
    lambda x, target, weight, reduction, delta: F.huber_loss(
        x, target, reduction=reduction, delta=delta,
        **({} if weight is None else {"weight": weight})),
    lambda x, target, weight, reduction, delta, need_grad: _reduced_shape(reduction,
                                                                          x.shape))

_bce_op = _custom_op(
    "binary_cross_entropy_with_logits",
    "(Tensor input, Tensor target, Tensor? weight, Tensor? pos_weight, str reduction,"
    " bool need_grad) -> (Tensor, Tensor)",
    _bce_fast,
    lambda x, target, weight, pos_weight, reduction: F.binary_cross_entropy_with_logits(
        x, target, weight, reduction=reduction, pos_weight=pos_weight),
    lambda x, target, weight, pos_weight, reduction, need_grad: _reduced_shape(reduction,
                                                                               x.shape))

_cross_entropy_op = _custom_op(
    "cross_entropy",
    "(Tensor input, Tensor target, Tensor? weight, int ignore_index, str reduction,"
    " float label_smoothing, float z_loss, float? softcap, bool need_grad)"
    " -> (Tensor, Tensor)",
    _cross_entropy_fast,
    _torch_cross_entropy,
    lambda x, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
    need_grad: _reduced_shape(reduction, x.shape[:1] + x.shape[2:] if x.dim() > 1 else ()))

_nll_loss_op = _custom_op(
    "nll_loss",
    "(Tensor input, Tensor target, Tensor? weight, int ignore_index, str reduction,"
    " bool need_grad) -> (Tensor, Tensor)",
    _nll_loss_fast,
    lambda x, target, weight, ignore_index, reduction: F.nll_loss(
        x, target, weight, ignore_index=ignore_index, reduction=reduction),
    lambda x, target, weight, ignore_index, reduction, need_grad: _reduced_shape(
        reduction, target.shape))

_kl_div_op = _custom_op(
    "kl_div",
    "(Tensor input, Tensor target, str reduction, bool log_target, bool need_grad)"
    " -> (Tensor, Tensor)",
    _kl_div_fast,
    _torch_kl_div,
    lambda x, target, reduction, log_target, need_grad: _reduced_shape(reduction, x.shape))

_multi_margin_op = _custom_op(
    "multi_margin_loss",
    "(Tensor input, Tensor target, int p, float margin, Tensor? weight, str reduction,"
    " bool need_grad) -> (Tensor, Tensor)",
    _multi_margin_fast,
    lambda x, target, p, margin, weight, reduction: F.multi_margin_loss(
        x, target, p=p, margin=margin, weight=weight, reduction=reduction),
    lambda x, target, p, margin, weight, reduction, need_grad: _reduced_shape(
        reduction, target.shape if x.dim() == 1 else x.shape[:1]))


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


class NLLLoss(torch.nn.NLLLoss):
    """``torch.nn.NLLLoss`` computed by :func:`nll_loss`."""

    def forward(self, input, target):
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class KLDivLoss(torch.nn.KLDivLoss):
    """``torch.nn.KLDivLoss`` computed by :func:`kl_div`."""

    def forward(self, input, target):
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


# --- more losses: l1, smooth L1, Gaussian and Poisson NLL, sigmoid focal ---------------
#
# The kernels of fastloss.l1, smooth_l1, poisson_nll, sigmoid_focal_loss and
# gaussian_nll, called on flat views as mse_loss's.  gaussian_nll_loss has two
# differentiated inputs (input and var): its own autograd Function and operator.

__all__ += ["l1_loss", "smooth_l1_loss", "gaussian_nll_loss", "poisson_nll_loss",
            "sigmoid_focal_loss", "L1Loss", "SmoothL1Loss", "GaussianNLLLoss",
            "PoissonNLLLoss"]

import math  # noqa: E402  (kept in this section)

_KERNELS.update({name: _by_torch_dtype(_ELEMENTWISE_KERNELS[name])
                 for name in ("l1", "smooth_l1", "poisson_nll", "sigmoid_focal_loss",
                              "gaussian_nll")})
# The bits of a checked kernel's `seen` that leave a call to torch: a target the
# kernel refuses (torch computes it by its formula), an input where torch's
# formula gives another value (Poisson's 0 * inf, its exp overflow: the kernel
# finds them in its own pass).
_TORCHS_VALUES = (fastloss._dispatch.elementwise_kernels.TARGET_INVALID
                  | fastloss._dispatch.elementwise_kernels.INPUT_UNCOVERED)
# The compiled call path (fastloss._torch_calls) binds the chosen build's entries,
# the Function and these bits once.
_torch_calls.bind(_dispatch.elementwise_kernels.ENTRIES, _dispatch.multiclass_kernels.ENTRIES,
                  torch, _functorch_active, _functorch_wrapped, forward_ad, _apply_fused,
                  _TORCHS_VALUES, _KERNELS["nll_loss"], _KERNELS["spatial_cross_entropy"],
                  _TORCH_BELOW_ELEMENTS,
                  (_NO_WEIGHT, _NO_VALUES[torch.float32], _NO_VALUES[torch.float64],
                   _NO_BLOCKS[torch.float32], _NO_BLOCKS[torch.float64]))
_compiled_nll_loss = _torch_calls.nll_loss


def _checked_elementwise(name, input, target, params, reduction, need_grad):
    """One flat call of an elementwise kernel with a check of its targets: (loss,
    grad) tensors, _Unsupported if the kernel saw a target it refuses or an input
    where torch's formula differs (torch computes those by its formula)."""
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    n = input.numel()
    view = (n, 1)
    none = _NO_ROWS[dtype]
    loss = np.empty(shape, numpy_dtype) if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if need_grad else None
    total, seen = _KERNELS[name][dtype](
        _array(input).reshape(view), _array(target).reshape(view), _NO_WEIGHT,
        none if loss is None else loss.reshape(view), none if grad is None else grad.reshape(view),
        none, 1.0 / n if reduction == "mean" else 1.0, _threads(), *params)
    if seen & _TORCHS_VALUES:
        raise _Unsupported
    if loss is None:
        loss = _scalar(total / n if reduction == "mean" else total, numpy_dtype)
    return torch.from_numpy(loss), None if grad is None else torch.from_numpy(grad)


def _l1_fast(input, target, weight, reduction, need_grad):
    # torch's gradient at a NaN residual is 0 (the kernel's NaN): a NaN loss
    # with a gradient is torch's.
    view = (input.numel(), 1)
    if weight is None:
        return _elementwise("l1", input, view, target, _NO_WEIGHT, _NO_WEIGHT, 0.0,
                            reduction, view[0], need_grad, nan_is_torchs=True)
    sample_weight = _weights(weight, input.shape)
    denominator = sample_weight.sum() if reduction == "mean" else 1.0
    if denominator == 0:
        raise _Unsupported              # torch's 0 / 0 = NaN
    return _elementwise("l1", input, view, target, sample_weight, _NO_WEIGHT, 0.0, reduction,
                        denominator, need_grad, nan_is_torchs=True)


def _smooth_l1_fast(input, target, reduction, beta, need_grad):
    n = input.numel()
    view = (n, 1)
    if beta == 0.0:
        # torch's l1_loss (its gradient 0 at a NaN residual: see _l1_fast)
        return _elementwise("l1", input, view, target, _NO_WEIGHT, _NO_WEIGHT, 0.0,
                            reduction, n, need_grad, nan_is_torchs=True)
    # the smooth_l1 kernel (its float32 span as cheap per element as huber's)
    return _elementwise("smooth_l1", input, view, target, _NO_WEIGHT, _NO_WEIGHT, beta,
                        reduction, n, need_grad)



def _poisson_fast(input, target, log_input, full, eps, reduction, need_grad):
    # The kernel differs from torch's formula where a zero target meets an
    # infinite factor (it gives 0 for 0 * inf, torch NaN), where torch's exp
    # overflows the dtype (the kernel rates in float64), and for rates x + eps
    # that are not positive: the kernel flags such inputs (INPUT_UNCOVERED) in
    # its own pass, and torch computes the call.
    return _checked_elementwise("poisson_nll", input, target, (log_input, full, eps), reduction,
                                need_grad)


def _focal_fast(input, target, alpha, gamma, reduction, need_grad):
    return _checked_elementwise("sigmoid_focal_loss", input, target, (alpha, gamma), reduction,
                                need_grad)


def _more_covered(input, target, reduction):
    return reduction in _REDUCTIONS and target.shape == input.shape \
        and target.dtype == input.dtype and input.numel() > 0


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error, as ``torch.nn.functional.l1_loss``.

    Per element, with r = input - target and w the optional elementwise
    ``weight`` (input's shape)::

        loss = w |r|,      d loss / d input = w sign(r)   (0 at r = 0)

    "mean" divides the sum by the number of elements, or by sum(w) when a
    weight is given (torch's definition).  Computed by the fused kernel of
    ``fastloss.l1`` on the flattened tensors.
    """
    options = {} if weight is None else {"weight": weight}
    if size_average is not None or reduce is not None:
        if not (isinstance(input, _Tensor) and isinstance(target, _Tensor)) \
                or target.shape != input.shape:
            # torch's function: its warnings in its order (size, then deprecation)
            return F.l1_loss(input, target, size_average, reduce, reduction, **options)
        reduction = _reduction.legacy_get_string(size_average, reduce)

    def torch_loss(x):
        return F.l1_loss(x, target, reduction=reduction, **options)

    if weight is None and not _compiling():
        loss = _compiled_call(_L1, input, target, reduction, 0.0, 0.0, 0.0, torch_loss)
        if loss is not None:
            return loss
    path = _path(input, target, weight)
    if path and _more_covered(input, target, reduction) \
            and (weight is None or weight.dtype == input.dtype
                 and weight.shape == input.shape):
        return _fused(path, _l1_fast, _l1_op, input, (target, weight, reduction), torch_loss)
    return torch_loss(input)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """Smooth L1 loss, as ``torch.nn.functional.smooth_l1_loss``.

    Per element, with r = input - target::

        loss = 0.5 r**2 / beta if |r| < beta else |r| - beta / 2
        d loss / d input = r / beta if |r| < beta else sign(r)

    beta = 0 is the L1 loss.  "mean" divides the sum by the number of
    elements.  Computed by the fused kernel of ``fastloss.smooth_l1``,
    beta = 0 by ``fastloss.l1``'s.  Calls on fewer
    than 65,536 elements are torch's own (its native loss is faster there).
    """
    if isinstance(input, _Tensor) and input.numel() < _TORCH_BELOW_ELEMENTS:
        # decided first: a small call pays nothing for the checks
        return F.smooth_l1_loss(input, target, size_average, reduce, reduction, beta)
    if size_average is not None or reduce is not None:
        if not (isinstance(input, _Tensor) and isinstance(target, _Tensor)) \
                or target.shape != input.shape:
            # torch's function: its warnings in its order (size, then deprecation)
            return F.smooth_l1_loss(input, target, size_average, reduce, reduction, beta)
        reduction = _reduction.legacy_get_string(size_average, reduce)

    def torch_loss(x):
        return F.smooth_l1_loss(x, target, reduction=reduction, beta=beta)

    path = _path(input, target)
    if path and _more_covered(input, target, reduction) and _is_real(beta) and beta >= 0:
        return _fused(path, _smooth_l1_fast, _smooth_l1_op, input,
                      (target, reduction, float(beta)), torch_loss)
    return torch_loss(input)


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    """Poisson negative log-likelihood, as ``torch.nn.functional.poisson_nll_loss``.

    Per element, with x the input and t the target::

        loss = exp(x) - t x            (log_input),    d loss / d x = exp(x) - t
        loss = x - t log(x + eps)      (otherwise),    d loss / d x = 1 - t / (x + eps)

    plus, with ``full``, Stirling's term t log t - t + 0.5 log(2 pi t) where
    t > 1 (no gradient).  "mean" divides the sum by the number of elements.
    Computed by the fused kernel of ``fastloss.poisson_nll``, with x + eps in
    float64 (torch rounds it to the input's dtype first).  torch's own
    function computes the calls the kernel would compute differently from
    torch's formula, which the kernel flags in its own pass over the input
    and the targets: targets negative, NaN or infinite (which the NumPy
    API refuses); infinite inputs, log-rates whose exp overflows the dtype,
    and rates x with x + eps not positive (where torch's 0 * inf is NaN).
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)

    def torch_loss(x):
        return F.poisson_nll_loss(x, target, log_input=log_input, full=full, eps=eps,
                                  reduction=reduction)

    covered = _is_real(eps) and eps >= 0
    if covered and not _compiling():
        loss = _compiled_call(_POISSON_NLL, input, target, reduction, 1.0 if log_input else 0.0,
                              1.0 if full else 0.0, float(eps), torch_loss)
        if loss is not None:
            return loss
    path = _path(input, target)
    if path and covered and _more_covered(input, target, reduction):
        return _fused(path, _poisson_fast, _poisson_op, input,
                      (target, bool(log_input), bool(full), float(eps), reduction), torch_loss)
    return torch_loss(input)


def _torch_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, written in torch (torchvision's formula, its
    checks and errors)."""
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"Invalid alpha value: {alpha}. alpha must be in the range [0,1] "
                         f"or -1 for ignore.")
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        pass
    elif reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    else:
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported "
                         f"reduction modes: 'none', 'mean', 'sum'")
    return loss


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """Sigmoid focal loss, as ``torchvision.ops.sigmoid_focal_loss`` (its signature,
    its default ``reduction="none"``, its checks).

    Per element, with x the logit, t the target and p = sigmoid(x)::

        p_t  = p t + (1 - p) (1 - t)
        a_t  = alpha t + (1 - alpha) (1 - t)        (1 when alpha = -1)
        loss = a_t (1 - p_t)**gamma BCE(x, t)

    Computed by the fused kernel of ``fastloss.sigmoid_focal_loss``, from the
    logits without rounding a probability: where torchvision's float
    arithmetic rounds 1 - p_t to 0 (|x| beyond about 17 in float32, 37 in
    float64, on the side of the target) its loss and gradient are 0, the
    kernel's are the tiny true values.  Targets outside [0, 1] or NaN, alpha
    outside [0, 1] (other than -1) and gamma < 0 are torchvision's formula
    (written in torch), errors included.
    """
    def torch_loss(x):
        return _torch_sigmoid_focal_loss(x, targets, alpha, gamma, reduction)

    covered = _is_real(alpha) and (0 <= alpha <= 1 or alpha == -1) and _is_real(gamma) \
        and gamma >= 0
    if covered and not _compiling():
        loss = _compiled_call(_SIGMOID_FOCAL_LOSS, inputs, targets, reduction, float(alpha),
                              float(gamma), 0.0, torch_loss)
        if loss is not None:
            return loss
    path = _path(inputs, targets)
    if path and covered and _more_covered(inputs, targets, reduction):
        return _fused(path, _focal_fast, _focal_op, inputs,
                      (targets, float(alpha), float(gamma), reduction), torch_loss)
    return torch_loss(inputs)


# --- gaussian_nll_loss: gradients for input and var -------------------------------------

class _FusedGaussian(torch.autograd.Function):
    """gaussian_nll_loss whose gradients (input's and var's) were computed with it.

    forward(input, var, (loss, grad, grad_var), torch_loss) returns ``loss``;
    ``grad_var`` has var's shape (its broadcast summed), or the input's for a
    per-element loss, which backward sums after scaling by grad_output.
    """

    @staticmethod
    def forward(ctx, input, var, loss_and_grads, torch_loss):
        loss, grad, grad_var = loss_and_grads
        ctx.save_for_backward(grad, grad_var)
        ctx.loss_dim = loss.dim()
        ctx.var_shape = var.shape
        ctx.inputs = (input, var)
        ctx.versions = (input._version, var._version)
        ctx.torch_loss = torch_loss
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        if _grad_enabled():
            return _gaussian_differentiable_backward(ctx, grad_output) + (None, None)
        grad, grad_var = ctx.saved_tensors
        grad, grad_var = _gaussian_scaled(grad, grad_var, grad_output, ctx.loss_dim,
                                          ctx.var_shape)
        return (grad if ctx.needs_input_grad[0] else None,
                grad_var if ctx.needs_input_grad[1] else None, None, None)


def _gaussian_scaled(grad, grad_var, grad_output, loss_dim, var_shape):
    """The gradients times grad_output, var's summed to its shape."""
    if loss_dim == 0:
        if grad_output.item() != 1.0:
            grad, grad_var = grad * grad_output, grad_var * grad_output
    else:
        grad = grad * grad_output
        grad_var = grad_var * grad_output
    if grad_var.shape != var_shape:
        grad_var = grad_var.sum_to_size(_unsqueezed_var_shape(grad.shape, var_shape)) \
            .reshape(var_shape)
    return grad, grad_var


def _unsqueezed_var_shape(shape, var_shape):
    """var's shape as torch broadcasts it (one dimension short: a last one of 1)."""
    if len(var_shape) == len(shape) - 1:
        return tuple(var_shape) + (1,)
    return tuple(var_shape)


def _gaussian_differentiable_backward(ctx, grad_output):
    inputs = ctx.inputs
    if tuple(t._version for t in inputs) != ctx.versions:
        raise RuntimeError("fastloss.torch: the input of a loss was modified in place "
                           "before a double backward through it")
    wanted = [t for t, needed in zip(inputs, ctx.needs_input_grad[:2]) if needed]
    with torch.enable_grad():
        loss = ctx.torch_loss(*inputs)
        found = iter(torch.autograd.grad(loss, wanted, grad_output, create_graph=True))
    return tuple(next(found) if needed else None for needed in ctx.needs_input_grad[:2])


def _gaussian_fast(input, target, var, full, eps, reduction, need_grad, need_var_grad):
    """(loss, grad, grad_var) of gaussian_nll_loss; var of the input's dimensions (torch's
    unsqueeze done) broadcasting to its shape, or one value.  grad_var has var's shape,
    or the input's when a per-element loss needs it per element (backward sums it)."""
    dtype, shape = input.dtype, input.shape
    numpy_dtype = _NUMPY_DTYPES[dtype]
    n = input.numel()
    any_grad = need_grad or need_var_grad
    per_element = reduction == "none" and need_var_grad
    var_shape = var.shape
    variances = _array(var)
    summed_axes = None
    if var_shape == shape:
        view = var_view = (n, 1)                            # one flat loop
    elif var.numel() == 1 and not per_element:
        # One variance: rows of the input, each with its copy (the kernel's
        # threads take rows); their gradients summed here.
        rows = math.gcd(n, 64)
        view, var_view = (rows, n // rows), (rows, 1)
        variances = np.full(var_view, variances.reshape(()), numpy_dtype)
        summed_axes = (0,)
    elif len(shape) > 1 and var_shape == shape[:-1] + (1,) and not per_element:
        view, var_view = (n // shape[-1], shape[-1]), (n // shape[-1], 1)   # one per row
    else:
        # Broadcast over other dimensions: read expanded, its gradient summed back.
        view = var_view = (n, 1)
        variances = np.ascontiguousarray(np.broadcast_to(variances, shape))
        if not per_element:
            summed_axes = tuple(k for k, size in enumerate(var_shape) if size != shape[k])
    none = _NO_ROWS[dtype]
    loss = np.empty(shape, numpy_dtype) if reduction == "none" else None
    grad = np.empty(shape, numpy_dtype) if any_grad else None
    grad_var = np.empty(variances.shape, numpy_dtype) if any_grad else None
    total, seen = _KERNELS["gaussian_nll"][dtype](
        _array(input).reshape(view), _array(target).reshape(view), variances.reshape(var_view),
        _NO_WEIGHT, none if loss is None else loss.reshape(view),
        none if grad is None else grad.reshape(view),
        none if grad_var is None else grad_var.reshape(var_view), none,
        1.0 / n if reduction == "mean" else 1.0, _threads(), full, eps)
    if seen & _TORCHS_VALUES:
        raise _Unsupported              # a negative variance: torch's error
    if loss is None:
        loss = _scalar(total / n if reduction == "mean" else total, numpy_dtype)
    if grad_var is not None and summed_axes is not None:
        grad_var = np.sum(grad_var, axis=summed_axes, dtype=np.float64).astype(numpy_dtype)
    if grad_var is not None and not per_element:
        grad_var = grad_var.reshape(var_shape)
    # (two empty tensors without gradients: an operator's outputs may not alias)
    return (torch.from_numpy(loss), input.new_empty(0) if grad is None else torch.from_numpy(grad),
            input.new_empty(0) if grad_var is None else torch.from_numpy(grad_var))


def _gaussian_var(input, var, path):
    """var as torch shapes it (a tensor of the input's dimensions broadcasting to its
    shape, or of one value), or None when the kernel does not cover it (torch decides)."""
    shape = input.shape
    if isinstance(var, float):          # (torch's test: NumPy's float64 included)
        if not var >= 0:
            return None                 # torch's error (NaN: its NaN loss)
        return torch.full((), float(var), dtype=input.dtype)
    if not isinstance(var, _Tensor) or not _plain(var) or var.dtype != input.dtype \
            or path == _EAGER and _is_functorch_tensor(var):
        return None
    if var.shape != shape:
        if shape[:-1] == var.shape and len(shape) > 0:
            var = var.unsqueeze(-1)
        elif var.dim() != len(shape) or any(v != n and v != 1 for v, n in zip(var.shape, shape)) \
                or sum(v for v, n in zip(var.shape, shape) if v != n) != 1:
            return None                 # torch's error, or a broadcast beyond the input
    return var


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian negative log-likelihood, as ``torch.nn.functional.gaussian_nll_loss``.

    Per element, with r = input - target and v = max(var, eps)::

        loss = 0.5 (log v + r**2 / v)     (+ 0.5 log(2 pi) with ``full``)
        d loss / d input = r / v,   d loss / d var = 0.5 (1 / v - r**2 / v**2)

    with torch's variance shapes (var of the input's shape, one dimension
    short, or with one dimension of size 1; a float), eps clamp and its
    gradient rule (the gradient for var taken at the clamped value and passed
    straight through), var's gradient summed over its broadcast dimensions.
    "mean" divides by the number of elements.  Computed by the fused kernel
    of ``fastloss.gaussian_nll``, which gives the gradients for input and var
    in the same pass.  A target that requires a gradient, a negative var
    (torch's error) and shapes torch broadcasts otherwise are torch's own.
    """
    def torch_loss(x, v=var):
        return F.gaussian_nll_loss(x, target, v, full=full, eps=eps, reduction=reduction)

    path = _path(input, target)
    shaped = None
    if path and _more_covered(input, target, reduction) and _is_real(eps) and eps >= 0:
        shaped = _gaussian_var(input, var, path)
    if shaped is None:
        return torch_loss(input)
    var_tensor = isinstance(var, _Tensor)
    if path == _EAGER and var_tensor and (
            forward_ad._current_level >= 0 and forward_ad.unpack_dual(var).tangent is not None):
        return torch_loss(input)        # forward-mode AD: torch differentiates
    enabled = _grad_enabled()
    need_grad = input.requires_grad and enabled
    need_var_grad = var_tensor and var.requires_grad and enabled
    args = (target, shaped, bool(full), float(eps), reduction, need_grad, need_var_grad)
    if path == _COMPILED:
        return _gaussian_op(input, *args)[0]
    try:
        loss, grad, grad_var = _gaussian_fast(input, *args)
    except _Unsupported:
        return torch_loss(input)
    if not (need_grad or need_var_grad):
        return loss
    return _FusedGaussian.apply(input, var if var_tensor else shaped, (loss, grad, grad_var),
                                torch_loss)


# --- their operators -------------------------------------------------------------------

_l1_op = _custom_op(
    "l1_loss",
    "(Tensor input, Tensor target, Tensor? weight, str reduction, bool need_grad)"
    " -> (Tensor, Tensor)",
    _l1_fast,
    lambda x, target, weight, reduction: F.l1_loss(
        x, target, reduction=reduction, **({} if weight is None else {"weight": weight})),
    lambda x, target, weight, reduction, need_grad: _reduced_shape(reduction, x.shape))

_smooth_l1_op = _custom_op(
    "smooth_l1_loss",
    "(Tensor input, Tensor target, str reduction, float beta, bool need_grad)"
    " -> (Tensor, Tensor)",
    _smooth_l1_fast,
    lambda x, target, reduction, beta: F.smooth_l1_loss(x, target, reduction=reduction,
                                                        beta=beta),
    lambda x, target, reduction, beta, need_grad: _reduced_shape(reduction, x.shape))

_poisson_op = _custom_op(
    "poisson_nll_loss",
    "(Tensor input, Tensor target, bool log_input, bool full, float eps, str reduction,"
    " bool need_grad) -> (Tensor, Tensor)",
    _poisson_fast,
    lambda x, target, log_input, full, eps, reduction: F.poisson_nll_loss(
        x, target, log_input=log_input, full=full, eps=eps, reduction=reduction),
    lambda x, target, log_input, full, eps, reduction, need_grad: _reduced_shape(reduction,
                                                                                 x.shape))

_focal_op = _custom_op(
    "sigmoid_focal_loss",
    "(Tensor input, Tensor target, float alpha, float gamma, str reduction, bool need_grad)"
    " -> (Tensor, Tensor)",
    _focal_fast,
    _torch_sigmoid_focal_loss,
    lambda x, target, alpha, gamma, reduction, need_grad: _reduced_shape(reduction, x.shape))


@torch.library.custom_op(
    "fastloss::gaussian_nll_loss", mutates_args=(),
    schema="(Tensor input, Tensor target, Tensor var, bool full, float eps, str reduction,"
           " bool need_grad, bool need_var_grad) -> (Tensor, Tensor, Tensor)")
def _gaussian_op(input, target, var, full, eps, reduction, need_grad, need_var_grad):
    try:
        return _gaussian_fast(input, target, var, full, eps, reduction, need_grad,
                              need_var_grad)
    except _Unsupported:
        # (a negative variance: torch raises its error)
        F.gaussian_nll_loss(input, target, var, full=full, eps=eps, reduction=reduction)
        raise AssertionError("fastloss.torch: torch took a variance the kernel refused") \
            from None


@_gaussian_op.register_fake
def _(input, target, var, full, eps, reduction, need_grad, need_var_grad):
    any_grad = need_grad or need_var_grad
    per_element = reduction == "none" and need_var_grad
    return (input.new_empty(_reduced_shape(reduction, input.shape)),
            input.new_empty(input.shape if any_grad else (0,)),
            input.new_empty((input.shape if per_element else var.shape) if any_grad else (0,)))


def _gaussian_setup_context(ctx, inputs, output):
    loss, grad, grad_var = output
    ctx.loss_dim = loss.dim()
    ctx.var_shape = inputs[2].shape
    ctx.save_for_backward(grad, grad_var)


def _gaussian_backward(ctx, grad_loss, _grad, _grad_var):
    # (traced into the compiled backward: no test of grad_loss == 1)
    grad, grad_var = ctx.saved_tensors
    grad, grad_var = grad * grad_loss, grad_var * grad_loss
    if grad_var.shape != ctx.var_shape:
        grad_var = grad_var.sum_to_size(ctx.var_shape)
    return grad, None, grad_var, None, None, None, None, None


_gaussian_op.register_autograd(_gaussian_backward, setup_context=_gaussian_setup_context)


# --- their modules -----------------------------------------------------------------------

class L1Loss(torch.nn.L1Loss):
    """``torch.nn.L1Loss`` computed by :func:`l1_loss`."""

    def forward(self, input, target):
        return l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(torch.nn.SmoothL1Loss):
    """``torch.nn.SmoothL1Loss`` computed by :func:`smooth_l1_loss`."""

    def forward(self, input, target):
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class GaussianNLLLoss(torch.nn.GaussianNLLLoss):
    """``torch.nn.GaussianNLLLoss`` computed by :func:`gaussian_nll_loss`."""

    def forward(self, input, target, var):
        return gaussian_nll_loss(input, target, var, full=self.full, eps=self.eps,
                                 reduction=self.reduction)


class PoissonNLLLoss(torch.nn.PoissonNLLLoss):
    """``torch.nn.PoissonNLLLoss`` computed by :func:`poisson_nll_loss`."""

    def forward(self, log_input, target):
        return poisson_nll_loss(log_input, target, log_input=self.log_input, full=self.full,
                                eps=self.eps, reduction=self.reduction)


# --- fused linear cross-entropy: the output layer and its loss ----------------------

__all__ += ["linear_cross_entropy", "LinearCrossEntropyLoss"]

import contextlib  # noqa: E402  (kept in this section)

from fastloss._linear_cross_entropy import run_chunks  # noqa: E402
from fastloss._linear_validation import prepare_linear  # noqa: E402


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
                          options["ignore_index"], options["label_smoothing"],
                          options["z_loss"], options["softcap"], sample_weight, reduction, grad,
                          options["chunk_rows"], options["n_threads"])
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

        cross_entropy(F.linear(input, weight, bias), target, weight=class_weight,
                      ignore_index=ignore_index, label_smoothing=label_smoothing,
                      z_loss=z_loss, softcap=softcap, reduction=reduction)

    (:func:`cross_entropy`: torch's with z_loss = 0 and softcap None)

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
    pass with grad_output as row weights.  The products run on
    ``torch.get_num_threads()`` threads and each chunk's kernel on one thread,
    one after the other (a second thread pool beside torch's would
    oversubscribe the cores; see :func:`fastloss.linear_cross_entropy`).
    The products' sums depend on the thread count: results are not
    bit-identical across thread counts.

    ``chunk_rows`` overrides the chunk size (see
    :func:`fastloss.linear_cross_entropy`).

    torch's own unfused functions compute the calls the fused layer does not
    cover, with torch's result and errors: tensors not on the CPU or of a
    dtype other than float32/float64, mixed dtypes, input not 2-D, labels not
    int64, labels out of range, a class_weight that requires a gradient, a
    "mean" over nothing (torch's NaN), tensor subclasses, functorch
    transforms and ``torch.compile`` tracing; and double backward.
    """
    if z_loss != 0.0 or softcap is not None:
        z_loss, softcap = _check_cross_entropy_extras(z_loss, softcap)

    def torch_loss(x, w, b):
        return _torch_cross_entropy(F.linear(x, w, b), target, class_weight, ignore_index,
                                    reduction, label_smoothing, z_loss, softcap)

    if not _linear_covered(input, weight, target, bias, class_weight) \
            or reduction not in _REDUCTIONS:
        return torch_loss(input, weight, bias)
    hidden, projection, labels = _numpy(input), _numpy(weight), _numpy(target)
    options = dict(bias=None if bias is None else _numpy(bias),
                   class_weight=None if class_weight is None else _as_float64(class_weight),
                   ignore_index=ignore_index, label_smoothing=label_smoothing,
                   z_loss=z_loss, softcap=softcap, chunk_rows=chunk_rows,
                   n_threads=_threads())
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
        if z_loss != 0.0 or softcap is not None:
            _check_cross_entropy_extras(z_loss, softcap)
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
