"""The multiclass losses and the row utilities: one declaration each, the public function beside it.

Design: losses of (N, C) logits or scores and one target per row (an
integer label or a row of probabilities).  Each is declared here once
(:class:`fastloss._registry.Loss`): its parameters and their rules, its
target rule, its kernel, whether it has a Hessian, its torch counterpart and
its row of the README table.  The function below each declaration is the
public one, with the docstring and type hints; it checks its arguments,
computes the "mean" divisor (:func:`fastloss._reduction.mean_denominator`)
and hands the rest to the shared call path (:func:`fastloss._multiclass.run`).
Their NumPy twins in ``fastloss.reference`` are written out by hand: the row
maths (log-sum-exp, the probability of the largest class) is not generic.

The row utilities logsumexp, softmax and log_softmax share the multiclass
kernels' row maths.
"""
from __future__ import annotations

from typing import Literal, overload

from numpy.typing import ArrayLike

from fastloss._checks import (CLASS_WEIGHT, GAMMA, IGNORE_INDEX, LABEL_SMOOTHING, SOFTCAP, Z_LOSS,
                              Choice, Flag, Real, check_cross_entropy_extras,
                              prepare_multiclass)
from fastloss._multiclass import fast_call, row_utility, run
from fastloss._reduction import mean_denominator
from fastloss._registry import Loss
from fastloss._results import FloatArray, LossGrad, LossGradHess, Reduction
from fastloss._targets import LABELS, LABELS_OR_PROBABILITIES, PROBABILITIES

__all__ = ["softmax_cross_entropy", "softmax_focal_loss", "softmax_binary_cross_entropy", "kl_divergence",
           "multiclass_hinge", "logsumexp", "softmax", "log_softmax"]


SOFTMAX_CROSS_ENTROPY = Loss(
    "softmax_cross_entropy", "multiclass", inputs=("logits", "target"), ndims=(2,),
    kernel="softmax_cross_entropy", hess=True, torch="cross_entropy",
    target=LABELS_OR_PROBABILITIES,
    params=(CLASS_WEIGHT, IGNORE_INDEX, LABEL_SMOOTHING, Z_LOSS, SOFTCAP),
    doc_shapes="(N, C); (N,) integer labels or (N, C) probabilities",
    doc_loss="−Σ_c t_c log p_c; exactly `torch.nn.functional.cross_entropy` "
             "(weight = class_weight)")


@overload
def softmax_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                          class_weight: ArrayLike | None = None,
                          ignore_index: int | None = None, label_smoothing: float = 0.0,
                          z_loss: float = 0.0, softcap: float | None = None,
                          sample_weight: ArrayLike | None = None,
                          reduction: Reduction = "mean", grad: bool = True,
                          hess: Literal[False] = False, out: FloatArray | None = None,
                          n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def softmax_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                          class_weight: ArrayLike | None = None,
                          ignore_index: int | None = None, label_smoothing: float = 0.0,
                          z_loss: float = 0.0, softcap: float | None = None,
                          sample_weight: ArrayLike | None = None,
                          reduction: Reduction = "mean", grad: bool = True,
                          hess: Literal[True], out: FloatArray | None = None,
                          n_threads: int | None = None) -> LossGradHess: ...
@SOFTMAX_CROSS_ENTROPY.declare  # noqa: E302
def softmax_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                          class_weight: ArrayLike | None = None,
                          ignore_index: int | None = None, label_smoothing: float = 0.0,
                          z_loss: float = 0.0, softcap: float | None = None,
                          sample_weight: ArrayLike | None = None,
                          reduction: Reduction = "mean", grad: bool = True,
                          hess: bool = False, out: FloatArray | None = None,
                          n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Softmax cross-entropy of integer labels or probability targets.

    Exactly ``torch.nn.functional.cross_entropy(logits, target, weight=class_weight,
    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)``,
    except that a "mean" over nothing is 0.0 with a zero gradient.  Per row,
    with p = softmax(x), w the class weights (1 without), eps the label
    smoothing and C the number of classes:

    Labels y::

        loss = (1 - eps) w_y (-log p_y) + (eps / C) sum_c w_c (-log p_c)
        grad = (1 - eps) w_y (p - onehot(y)) + (eps / C) (sum_c w_c p - w)

    A row whose label equals ``ignore_index`` has loss 0 and gradient 0.
    "mean" divides by sum_i s_i w_{y_i} over the rows not ignored (s the
    sample weights, 1 without): torch's weighted mean.

    Probability targets t (rows of an (N, C) array), with
    t' = (1 - eps) t + eps / C::

        loss = -sum_c w_c t'_c log p_c
        grad = (sum_c w_c t'_c) p - w t'

    and "mean" divides by sum_i s_i (N without sample weights), as torch.

    z-loss (PaLM's auxiliary loss), with lse = m + log1p(S) the row's
    log-sum-exp::

        loss += z_loss lse^2
        grad += 2 z_loss lse p

    A row's z-loss is multiplied by its sample weight (not by its class
    weight), is left out where the row is ignored, is part of its "none"
    loss, and "mean" divides it by the same denominator as the rest.

    Soft-capping (Gemma 2): with softcap = c every logit x is first replaced
    by x' = c tanh(x / c) (so lse above is that of x'), and the gradient with
    respect to x is the one above, with respect to x', times
    dx'/dx = 1 - tanh^2(x / c), computed as 4 q / (1 + q)^2 with
    q = exp(-2 |x| / c) (no cancellation where a logit saturates).

    Hessian: both forms are loss = -sum_c a_c log p_c with A = sum_c a_c
    (A = (1 - eps) w_y + (eps / C) sum_c w_c for labels, sum_c w_c t'_c for
    probabilities), so grad = A p - a and the Hessian is A (diag(p) - p p^T),
    whose diagonal is returned with hess=True::

        hess = A p (1 - p)

    with p_k (1 - p_k) = S / (1 + S)^2 at the first maximum k (accurate as
    p_k -> 1).  An ignored row has hess 0.

    The log-probabilities are log p_c = (x_c - m) - log1p(S), m the row
    maximum and S the sum of exp(x_c - m) over the classes other than the
    first maximum, so every loss and gradient is finite for finite logits of
    any magnitude.  A term with a zero coefficient vanishes even where
    log p_c = -inf (a -inf logit).

    Infinite logits: the classes at an infinite row maximum share the
    probability equally (+inf beats every finite logit; a row of -inf only is
    uniform), and a -inf logit below a finite maximum has probability 0.
    NaN in a row makes that row's loss and gradient NaN, and no other row's.

    Args:
      logits: shape (N, C).
      target: (N,) integer labels (any integer dtype; floats are a TypeError)
        or (N, C) class probabilities.
      class_weight: optional (C,) weight of each class (torch's ``weight``).
      ignore_index: None, or a label value whose rows are skipped (labels only).
      label_smoothing: eps in [0, 1].
      z_loss: the weight z >= 0 of the z-loss z lse^2 of each row (0: none).
      softcap: None, or c > 0: the logits are capped to c tanh(x / c).
      sample_weight: optional (N,) weights, one per row; each also weights
        that row's share of the "mean" denominator.
      reduction: "mean", "sum" or "none" (per-row s_i loss_i).
      grad: compute the gradient (False skips all gradient work).
      hess: also compute the diagonal of the Hessian of the returned loss
        with respect to the logits (sample weights and the "mean" divisor
        included), in the same pass; needs grad=True, and is a ValueError
        with z_loss or softcap.
      out: optional C-contiguous (N, C) array receiving the gradient; may be
        ``logits`` itself (the gradient then overwrites the logits).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      LossGrad(loss, grad): the reduced loss and its gradient with respect
      to the logits.  With hess=True, LossGradHess(loss, grad, hess), hess a
      new (N, C) array of grad's dtype (``out`` receives the gradient only).

    References:
      Szegedy et al., "Rethinking the Inception Architecture for Computer
      Vision", 2016 (label smoothing).  Chowdhery et al., "PaLM: Scaling
      Language Modeling with Pathways", 2022 (z-loss).  Gemma Team, "Gemma 2:
      Improving Open Language Models at a Practical Size", 2024 (soft-capping).

    Examples:
      >>> import fastloss
      >>> loss, g = fastloss.softmax_cross_entropy([[0.0, 0.0]], [1])
      >>> round(loss, 6)  # log 2
      0.693147
      >>> g
      array([[ 0.5, -0.5]])
    """
    result = fast_call(SOFTMAX_CROSS_ENTROPY, logits, target,
                       (class_weight, ignore_index, label_smoothing, z_loss, softcap),
                       sample_weight, reduction, grad, hess, out, n_threads)
    if result is not None:              # the default call with labels, compiled
        return result
    options = _NO_OPTIONS
    # (only the default, a float 0.0 with no cap, skips the checks: False, "0" or
    # NaN must meet them, as in the reference)
    if type(z_loss) is not float or z_loss != 0.0 or softcap is not None:
        z_loss, softcap = check_cross_entropy_extras(z_loss, softcap, hess)
        options = {"z_loss": z_loss, "softcap": softcap}
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              class_weight=class_weight, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, hess=hess,
                              defer_weight_check=True, defer_label_check=True)
    return run(SOFTMAX_CROSS_ENTROPY, prep, _label_denominator(prep), options)


_NO_OPTIONS: dict = {}


def _label_denominator(prep) -> float:
    """The "mean" divisor of a loss of labels or probabilities: sum_i s_i w_{y_i} over
    the rows not ignored (torch's weighted mean), sum_i s_i for probabilities."""
    if prep.reduction != "mean":
        return 1.0
    return mean_denominator(
        prep.shape[0], 1, prep.weight, labels=prep.target if prep.has_labels else None,
        class_weight=prep.class_weight, ignore_index=prep.ignore_index)


SOFTMAX_FOCAL_LOSS = Loss(
    "softmax_focal_loss", "multiclass", inputs=("logits", "target"), ndims=(2,),
    kernel="softmax_focal_loss", hess=True, target=LABELS,
    params=(GAMMA, CLASS_WEIGHT, IGNORE_INDEX),
    doc_shapes="(N, C); (N,) integer labels",
    doc_loss="−w_y (1 − p_y)^γ log p_y (Lin et al. 2017, multiclass form)")


@overload
def softmax_focal_loss(logits: ArrayLike, target: ArrayLike, *, gamma: float = 2.0,
                       class_weight: ArrayLike | None = None, ignore_index: int | None = None,
                       sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                       grad: bool = True, hess: Literal[False] = False,
                       out: FloatArray | None = None,
                       n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def softmax_focal_loss(logits: ArrayLike, target: ArrayLike, *, gamma: float = 2.0,
                       class_weight: ArrayLike | None = None, ignore_index: int | None = None,
                       sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                       grad: bool = True, hess: Literal[True],
                       out: FloatArray | None = None,
                       n_threads: int | None = None) -> LossGradHess: ...
@SOFTMAX_FOCAL_LOSS.declare  # noqa: E302
def softmax_focal_loss(logits: ArrayLike, target: ArrayLike, *, gamma: float = 2.0,
                       class_weight: ArrayLike | None = None, ignore_index: int | None = None,
                       sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                       grad: bool = True, hess: bool = False, out: FloatArray | None = None,
                       n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Softmax focal loss: the cross-entropy of integer labels, down-weighting easy rows.

    Per row, with p = softmax(x), P = p_y the probability of the label,
    q = 1 - P, ce = -log P and w_y the class weight of the label (1 without)::

        loss = w_y q^gamma ce
        grad = w_y F (p - onehot(y)),        F = q^gamma + gamma P q^(gamma - 1) ce
        hess = w_y F p (1 - p) - w_y P F'(P) (p - onehot(y))^2
        F'(P) = gamma q^(gamma - 1) (ce - 2 - (gamma - 1) P ce / q)

    (the diagonal of the Hessian).  gamma = 0 is softmax_cross_entropy.  The
    row's quantities are those of the cross-entropy: ce = log1p(S) - (x_y - m)
    from the log-sum-exp, never the log of a rounded probability, and
    q = S / (1 + S) when y is the first maximum (no cancellation as P -> 1),
    else 1 - P with P <= 1/2.  F is formed as q^gamma (1 + gamma P r) with
    r = ce / q >= 1 (1 where q = 0): every term positive.

    A row whose label equals ``ignore_index`` has loss 0 and gradient 0.
    "mean" divides by sum_i s_i w_{y_i} over the rows not ignored (s the
    sample weights, 1 without), as softmax_cross_entropy.

    Args:
      logits: shape (N, C).
      target: (N,) integer labels (any integer dtype; floats are a TypeError).
      gamma: the focusing exponent, >= 0.
      class_weight: optional (C,) weight of each class: a row's loss is
        multiplied by the weight of its label.
      ignore_index: None, or a label value whose rows are skipped.
      sample_weight, reduction, grad, hess, out, n_threads: as in
        :func:`softmax_cross_entropy`.

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True.

    References:
      T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for
      Dense Object Detection", ICCV 2017.

    Examples:
      >>> import fastloss
      >>> loss, g = fastloss.softmax_focal_loss([[0.0, 0.0]], [1])
      >>> round(loss, 6)  # (1/2)^2 log 2
      0.173287
      >>> g
      array([[ 0.2982868, -0.2982868]])
    """
    gamma = GAMMA.check(gamma)
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", class_weight=class_weight,
                              ignore_index=ignore_index, hess=hess, defer_weight_check=True)
    return run(SOFTMAX_FOCAL_LOSS, prep, _label_denominator(prep), {"gamma": gamma})


SOFTMAX_BINARY_CROSS_ENTROPY = Loss(
    "softmax_binary_cross_entropy", "multiclass", inputs=("logits", "target"), ndims=(2,),
    kernel="softmax_binary_cross_entropy", target=LABELS_OR_PROBABILITIES,
    doc_shapes="(N, C); labels or probabilities",
    doc_loss="−Σ_c [t_c log p_c + (1 − t_c) log(1 − p_c)]")


@SOFTMAX_BINARY_CROSS_ENTROPY.declare
def softmax_binary_cross_entropy(logits: ArrayLike, target: ArrayLike, *,
                                 sample_weight: ArrayLike | None = None,
                                 reduction: Reduction = "mean", grad: bool = True,
                                 out: FloatArray | None = None,
                                 n_threads: int | None = None) -> LossGrad:
    """Softmax cross-entropy that also penalises the probability of the wrong classes.

    Per row, with p = softmax(x) and t the target probabilities (onehot(y)
    for labels)::

        loss = -sum_c [t_c log p_c + (1 - t_c) log(1 - p_c)]

    so for a label y it is -log p_y - sum_{c != y} log(1 - p_c).  With
    A = sum_c t_c, the odds r_c = p_c / (1 - p_c) and B = sum_c (1 - t_c) r_c::

        grad_k = p_k A - t_k + (1 - t_k) r_k - p_k B

    log(1 - p_c) is computed without cancellation: for the first maximum k,
    1 - p_k = S / (1 + S) with log S computed as the log-sum-exp of the other
    logits; elsewhere p_c <= 1/2 and log(1 - p_c) = log1mexp(log p_c)
    (Maechler 2012).  The term p_c r_k of the largest class is e_c / (T S),
    rescaled by the second largest logit, so the gradient is finite and
    accurate for finite logits of any magnitude.

    Args:
      logits: shape (N, C).
      target: (N,) integer labels or (N, C) probabilities.
      Others as in :func:`softmax_cross_entropy` ("mean" averages over rows).

    Returns:
      LossGrad(loss, grad).

    Examples:
      >>> import fastloss
      >>> round(fastloss.softmax_binary_cross_entropy([[0.0, 0.0]], [0]).loss, 6)  # 2 log 2
      1.386294
    """
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              defer_weight_check=True)
    denominator = mean_denominator(prep.shape[0], 1, prep.weight) \
        if prep.reduction == "mean" else 1.0
    return run(SOFTMAX_BINARY_CROSS_ENTROPY, prep, denominator)  # type: ignore[return-value]


KL_DIVERGENCE = Loss(
    "kl_divergence", "multiclass", inputs=("logits", "target"), ndims=(2,),
    kernel="kl_divergence", hess=True, torch="kl_div", target=PROBABILITIES,
    doc_shapes="(N, C); (N, C) probabilities",
    doc_loss='Σ_c t_c (log t_c − log p_c); "mean" is torch\'s `batchmean`')


@overload
def kl_divergence(logits: ArrayLike, target: ArrayLike, *,
                  sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                  grad: bool = True, hess: Literal[False] = False,
                  out: FloatArray | None = None, n_threads: int | None = None) -> LossGrad: ...
@overload  # noqa: E302
def kl_divergence(logits: ArrayLike, target: ArrayLike, *,
                  sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                  grad: bool = True, hess: Literal[True],
                  out: FloatArray | None = None,
                  n_threads: int | None = None) -> LossGradHess: ...
@KL_DIVERGENCE.declare  # noqa: E302
def kl_divergence(logits: ArrayLike, target: ArrayLike, *,
                  sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                  grad: bool = True, hess: bool = False, out: FloatArray | None = None,
                  n_threads: int | None = None) -> LossGrad | LossGradHess:
    """Kullback-Leibler divergence KL(target || softmax(logits)) of each row.

    Per row, with p = softmax(x), t the target probabilities and
    A = sum_c t_c::

        loss = sum_c t_c (log t_c - log p_c)        (0 log 0 = 0)
        grad = A p - t
        hess = A p (1 - p)          (the diagonal of A (diag(p) - p p^T))

    "mean" averages over rows (torch's ``kl_div(log_softmax(x), t,
    reduction="batchmean")``).  Targets are not checked to sum to 1.

    Args:
      logits: shape (N, C).
      target: (N, C) probabilities.
      Others as in :func:`softmax_cross_entropy` (hess included).

    Returns:
      LossGrad(loss, grad), or LossGradHess(loss, grad, hess) with hess=True.

    Examples:
      >>> import fastloss
      >>> fastloss.kl_divergence([[0.0, 0.0]], [[0.5, 0.5]]).loss
      0.0
    """
    prep = prepare_multiclass(logits, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="probabilities", hess=hess,
                              defer_weight_check=True)
    denominator = mean_denominator(prep.shape[0], 1, prep.weight) \
        if prep.reduction == "mean" else 1.0
    return run(KL_DIVERGENCE, prep, denominator)


MULTICLASS_HINGE = Loss(
    "multiclass_hinge", "multiclass", inputs=("scores", "target"), ndims=(2,),
    kernel="multiclass_hinge", torch="multi_margin_loss", target=LABELS,
    params=(Real("margin", 1.0, low=0.0),
            Choice("kind", "weston_watkins", choices=("weston_watkins", "crammer_singer")),
            Flag("squared", False, strict=False)),      # any value's truth, as always
    doc_shapes="(N, C); (N,) labels",
    doc_loss=('Weston-Watkins Σ_{j≠y} max(0, m + s_j − s_y)^q, or `kind="crammer_singer"`: '
              "max(0, max_{j≠y}(m + s_j) − s_y)^q"))


@MULTICLASS_HINGE.declare
def multiclass_hinge(scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0,
                     kind: Literal["weston_watkins", "crammer_singer"] = "weston_watkins",
                     squared: bool = False, sample_weight: ArrayLike | None = None,
                     reduction: Reduction = "mean", grad: bool = True,
                     out: FloatArray | None = None, n_threads: int | None = None) -> LossGrad:
    """Multiclass hinge loss of a max-margin classifier (the multiclass SVM loss).

    Per row, with s the scores, y the label and q = 2 if ``squared`` else 1:

    Weston-Watkins (``kind="weston_watkins"``), one hinge per wrong class::

        loss = sum_{j != y} max(0, margin + s_j - s_y) ** q

    Crammer-Singer (``kind="crammer_singer"``), the hinge of the best wrong class::

        loss = max(0, max_{j != y} (margin + s_j) - s_y) ** q

    Subgradient: a hinge term z contributes q z^(q-1) to d/ds_j and its
    negative to d/ds_y only when z > 0 strictly; for Crammer-Singer ties take
    the first maximising class.  torch's ``multi_margin_loss(s, y, p=q,
    margin=margin)`` is the Weston-Watkins loss divided by C.

    Args:
      scores: shape (N, C).
      target: (N,) integer labels.
      margin: the margin, >= 0.
      kind: "weston_watkins" or "crammer_singer".
      squared: square each hinge (the L2-SVM loss).
      Others as in :func:`softmax_cross_entropy` ("mean" averages over rows).

    Returns:
      LossGrad(loss, grad).

    References:
      J. Weston, C. Watkins, "Support Vector Machines for Multi-Class Pattern
      Recognition", ESANN 1999.  K. Crammer, Y. Singer, "On the Algorithmic
      Implementation of Multiclass Kernel-based Vector Machines", JMLR 2001.

    Examples:
      >>> import fastloss
      >>> fastloss.multiclass_hinge([[2.0, 1.5, 0.0]], [0], reduction="sum")
      LossGrad(loss=0.5, grad=array([[-1.,  1.,  0.]]))
    """
    margin, kind, squared = MULTICLASS_HINGE.check_scalars((margin, kind, squared))
    options = {"margin": margin, "kind": kind, "squared": squared}
    prep = prepare_multiclass(scores, target, sample_weight, reduction, grad, out, n_threads,
                              target_kind="labels", pred_name="scores",
                              defer_weight_check=True)
    denominator = mean_denominator(prep.shape[0], 1, prep.weight) \
        if prep.reduction == "mean" else 1.0
    return run(MULTICLASS_HINGE, prep, denominator, options)  # type: ignore[return-value]


# --- row utilities -------------------------------------------------------------------

LOGSUMEXP = Loss("logsumexp", "rows", inputs=("x",), ndims=(2,), kernel="logsumexp")


@LOGSUMEXP.declare
def logsumexp(x: ArrayLike, *, out: FloatArray | None = None,
              n_threads: int | None = None) -> FloatArray:
    """log(sum_c exp(x_c)) of each row of a 2-D array, without overflow.

    Computed as m + log1p(sum_{c != k} exp(x_c - m)), m the row maximum at
    its first position k (Blanchard, Higham & Higham 2021).  A row with a
    +inf gives +inf, a row of -inf only gives -inf, a row with NaN gives NaN,
    an empty row gives -inf.  As ``scipy.special.logsumexp(x, axis=1)``.

    Args:
      x: shape (N, C).
      out: optional C-contiguous (N,) array of x's dtype receiving the result.
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      An (N,) array of x's computation dtype (float32 or float64).

    Examples:
      >>> import fastloss
      >>> fastloss.logsumexp([[0.0, 0.0], [1000.0, 1000.0]]).tolist()
      [0.6931471805599453, 1000.6931471805599]
    """
    return row_utility("logsumexp", x, out, n_threads, out_ndim=1)


SOFTMAX = Loss("softmax", "rows", inputs=("x",), ndims=(2,), kernel="softmax")


@SOFTMAX.declare
def softmax(x: ArrayLike, *, out: FloatArray | None = None,
            n_threads: int | None = None) -> FloatArray:
    """softmax of each row: p_c = exp(x_c - m) / sum_j exp(x_j - m), m the row maximum.

    The classes at an infinite row maximum share the probability equally
    (+inf beats every finite logit; a row of -inf only is uniform); a -inf
    logit below a finite maximum has probability 0; NaN makes its row NaN.
    As ``scipy.special.softmax(x, axis=1)`` for finite rows.

    Args:
      x: shape (N, C).
      out: optional C-contiguous (N, C) array receiving the result; may be x
        itself (in place).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      An (N, C) array.

    Examples:
      >>> import fastloss
      >>> fastloss.softmax([[0.0, 0.0]])
      array([[0.5, 0.5]])
    """
    return row_utility("softmax", x, out, n_threads, out_ndim=2)


LOG_SOFTMAX = Loss("log_softmax", "rows", inputs=("x",), ndims=(2,), kernel="log_softmax")


@LOG_SOFTMAX.declare
def log_softmax(x: ArrayLike, *, out: FloatArray | None = None,
                n_threads: int | None = None) -> FloatArray:
    """log softmax of each row: (x_c - m) - log1p(sum_{j != k} exp(x_j - m)).

    m is the row maximum at its first position k.  Finite for finite logits
    of any magnitude; as ``scipy.special.log_softmax(x, axis=1)``.  Infinite
    logits follow the rule of :func:`softmax`.

    Args:
      x: shape (N, C).
      out: optional C-contiguous (N, C) array receiving the result; may be x
        itself (in place).
      n_threads: None for the OpenMP default, or a thread count.

    Returns:
      An (N, C) array.

    Examples:
      >>> import fastloss
      >>> fastloss.log_softmax([[0.0, 0.0]])
      array([[-0.69314718, -0.69314718]])
    """
    return row_utility("log_softmax", x, out, n_threads, out_ndim=2)
