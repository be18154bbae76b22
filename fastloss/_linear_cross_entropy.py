"""The fused linear cross-entropy: the output layer and its loss, in chunks of rows.

Design: the (N, V) logits of a large vocabulary are never held.  Rows are
taken in chunks; for each chunk

1. one matrix product writes the chunk's logits into one reused buffer
   (plus the bias);
2. the fused cross-entropy kernel turns them into their gradient G_c in
   place (``out=`` the buffer), with the "mean" divisor of the whole batch
   folded into the per-row weights;
3. two products take the gradient back: G_c @ weight into grad_hidden's
   rows, G_c.T @ hidden_c into grad_weight (in place by SciPy's gemm when
   SciPy is installed; without it the first chunk directly and the others
   by blocks of classes through one scratch array, since NumPy's matmul
   cannot accumulate into its output); grad_bias sums G_c's rows in float64.

The three products are methods of one small object (``ScipyProducts`` or
``NumpyProducts`` here; ``fastloss.torch`` passes torch's, which accumulate
in place), so that the loop, and with it the semantics, is written once.
SciPy is an optional peer, never imported by ``import fastloss``.

The reference twin in :mod:`fastloss.reference` has the same signature,
semantics and docstring, and computes the whole logits at once.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
from numpy.typing import ArrayLike

from fastloss import _dispatch
from fastloss._linear_validation import (LinearCrossEntropyGrad, label_mean_denominator,
                                         prepare_linear)
from fastloss._multiclass_losses import softmax_cross_entropy
from fastloss._registry import Loss
from fastloss._results import Reduction

# The default chunk: at most the memory the budget allows above the
# inputs and the returned gradients, a tenth of the logits plus one
# weight-sized buffer, less the scratch below (the only other array the size
# of a block of the weight); at least MIN_CHUNK_ROWS rows, at most what fits
# in MAX_CHUNK_BYTES; the rows are then shared evenly between the chunks (no
# small last chunk), in multiples of ALIGN_ROWS.  Larger chunks are faster:
# each chunk costs one read-modify-write pass over grad_weight and one read
# of the weight per product.  At N, D, V = 2_048, 512, 128_000 the three
# SciPy products took 579 ms per 192 rows in chunks of 192 rows, 532 in
# chunks of 384 and 514 in chunks of 704 on one thread (Xeon, quiet machine).
CHUNK_FRACTION = 10
MIN_CHUNK_ROWS = 128
MAX_CHUNK_BYTES = 256 * 2**20
# grad_hidden = G_c @ weight (sums over V into a small (rows, D) output) is
# made in blocks of at most this many rows of the chunk.  SciPy's sgemm on 2
# threads, D, V = 512, 128_000, ms per 192 rows: 93 in one product of 512
# rows, 111 in blocks of 256, 117 in blocks of 192 on a quiet machine; with
# the other core busy (load 5) 544-620, 347-354 and 381-384.
GRAD_HIDDEN_ROWS = 256
# Chunks of a multiple of 16 rows: the chunk's rows are a dimension of all
# three products, and OpenBLAS's sgemm ran 15-20% slower at 187 rows per
# chunk (the even share of N = 2_048 in 11 chunks) than at 188 or 192, on
# 1 and on 2 threads (the products' edge tiles; 2 vCPUs, Xeon).
ALIGN_ROWS = 16
# The scratch of the weight gradient's accumulation without SciPy: blocks of
# classes of at most this many bytes.  Each block is one BLAS call, which on
# 2 threads pays a synchronisation (long when the machine is loaded): 2 MiB
# blocks (~1_000 classes at D = 512) made that product 2 to 4 times slower
# than the others on 2 threads, 16 MiB ones 1.3 times (2 vCPUs, load 12).
SCRATCH_BYTES = 16 * 2**20


def default_chunk_rows(n_rows, n_classes, n_features, itemsize):
    """Rows per chunk when chunk_rows is None (the rule in the docstring)."""
    row_bytes = max(n_classes * itemsize, 1)
    budget = n_rows * row_bytes // CHUNK_FRACTION \
        + max(n_classes * n_features * itemsize - SCRATCH_BYTES, 0)
    rows = max(budget // row_bytes, MIN_CHUNK_ROWS)
    rows = max(1, min(rows, MAX_CHUNK_BYTES // row_bytes, n_rows))
    align = ALIGN_ROWS if ALIGN_ROWS <= rows < n_rows else 1   # not for one chunk or tiny ones
    rows -= rows % align
    n_chunks = -(-n_rows // rows)
    even = -(-n_rows // max(n_chunks, 1))
    return max(1, -(-even // align) * align)        # <= rows: rows is a multiple of align


def _blas_threads(n_threads):
    """A context limiting BLAS to n_threads (0: its default) when threadpoolctl is installed."""
    if n_threads == 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n_threads, user_api="blas")


def _row_weights(prep):
    """The kernel's per-row weights and reduction, and the "mean" divisor (None if not mean).

    For "mean", s_i / denominator: the kernel then returns this chunk's share
    of the mean and a gradient already scaled by the whole batch's divisor.
    """
    if prep.reduction != "mean":
        return prep.sample_weight, prep.reduction, None
    denominator = label_mean_denominator(prep)
    if denominator == 0:
        return None, "sum", 0.0
    n_rows = prep.labels.shape[0]
    weights = np.full(n_rows, 1.0 / denominator) if prep.sample_weight is None \
        else prep.sample_weight / denominator
    return weights, "sum", denominator


def _empty_mean(prep):
    """A "mean" over nothing: 0.0 and all-zero gradients."""
    if not prep.grad:
        return LinearCrossEntropyGrad(0.0, None, None, None)
    grad_bias = None if prep.bias is None else np.zeros(prep.bias.shape, prep.dtype)
    return LinearCrossEntropyGrad(0.0, np.zeros(prep.hidden.shape, prep.dtype),
                                  np.zeros(prep.weight.shape, prep.dtype), grad_bias)


class NumpyProducts:
    """The matrix products of the chunk loop, by NumPy's matmul (its BLAS).

    ``logits(h_chunk, out)``: out = h_chunk @ weight.T;
    ``grad_hidden(g, out)``: out = g @ weight;
    ``add_grad_weight(g, h_chunk, grad_weight, first)``: grad_weight (+)= g.T @ h_chunk
    (``first``: assign).  ``threads()`` is the context of the whole loop.
    """

    def __init__(self, weight, n_threads):
        self.weight = weight
        self.n_threads = n_threads
        self.scratch = None             # (block, D), made at the second chunk
        self.transposed = None          # (D, rows), made at the first chunk

    def threads(self):
        return _blas_threads(self.n_threads)

    def logits(self, h_chunk, out):
        np.matmul(h_chunk, self.weight.T, out=out)

    def transposed_chunk(self, rows, dtype):
        """A reused C-ordered (D, rows) buffer: a block of grad_hidden's rows, transposed."""
        size = self.weight.shape[1] * rows
        if self.transposed is None or self.transposed.size < size:
            self.transposed = np.empty(size, dtype)
        return self.transposed[:size].reshape(self.weight.shape[1], rows)

    def grad_hidden(self, g, out):
        """out = g @ weight, in blocks of at most GRAD_HIDDEN_ROWS rows."""
        for start in range(0, g.shape[0], GRAD_HIDDEN_ROWS):
            stop = min(start + GRAD_HIDDEN_ROWS, g.shape[0])
            transposed = self.transposed_chunk(stop - start, g.dtype)
            self.grad_hidden_block(g[start:stop], transposed)
            np.copyto(out[start:stop], transposed.T)

    def grad_hidden_block(self, g, transposed):
        # weight.T @ g.T into a small (D, rows) buffer, then copied: OpenBLAS
        # threads this form well, while g @ weight (long sums over V, small
        # output) ran 2 to 8 times slower on 2 threads than on 1 (Xeon, 2 cores).
        np.matmul(self.weight.T, g.T, out=transposed)

    def add_grad_weight(self, g, h_chunk, grad_weight, first):
        if first:
            np.matmul(g.T, h_chunk, out=grad_weight)
            return
        # NumPy's matmul cannot accumulate into its output: the product goes by
        # blocks of classes through one scratch array.
        n_classes, n_features = grad_weight.shape
        if self.scratch is None:
            block = SCRATCH_BYTES // max(n_features * grad_weight.itemsize, 1)
            self.scratch = np.empty((max(1, min(block, n_classes)), n_features),
                                    grad_weight.dtype)
        block = self.scratch.shape[0]
        for start in range(0, n_classes, block):
            stop = min(start + block, n_classes)
            part, rows = self.scratch[:stop - start], grad_weight[start:stop]
            np.matmul(g[:, start:stop].T, h_chunk, out=part)
            self.accumulate(rows, part)

    @staticmethod
    def accumulate(total, part):
        """total += part (a block of grad_weight's rows and its scratch)."""
        np.add(total, part, out=total)


def scipy_gemm(dtype):
    """SciPy's BLAS gemm (sgemm or dgemm) for dtype, or None when SciPy is not installed."""
    try:
        from scipy.linalg.blas import get_blas_funcs
    except ImportError:
        return None
    return get_blas_funcs("gemm", dtype=dtype)


class ScipyProducts(NumpyProducts):
    """The same products by SciPy's BLAS gemm, which accumulates in place (beta = 1).

    gemm computes c = a' @ b' + beta c on Fortran-ordered arrays; the
    transposes of C-ordered arrays are Fortran-ordered views, so every
    product writes into its destination without a copy: no scratch array
    for grad_weight, and one BLAS call per product and chunk.  Used when
    SciPy is installed and no dimension is zero (f2py refuses empty arrays).
    """

    def __init__(self, weight, n_threads, gemm):
        super().__init__(weight, n_threads)
        self.gemm = gemm

    def _into(self, c, a, b, beta, trans_a=0, trans_b=0):
        """c = op(a) @ op(b) + beta c, in place (c Fortran-ordered)."""
        result = self.gemm(1.0, a, b, beta=beta, c=c, trans_a=trans_a, trans_b=trans_b,
                           overwrite_c=1)
        if result.ctypes.data != c.ctypes.data:     # f2py copied c (not for these views)
            np.copyto(c, result)

    def logits(self, h_chunk, out):
        # out.T (V, rows) = weight @ h_chunk.T
        self._into(out.T, self.weight.T, h_chunk.T, 0.0, trans_a=1)

    def grad_hidden_block(self, g, transposed):
        # the (rows, D) product in Fortran order, in the (D, rows) buffer: the
        # orientation OpenBLAS threads well (see NumpyProducts.grad_hidden_block)
        self._into(transposed.T, g.T, self.weight.T, 0.0, trans_a=1, trans_b=1)

    def add_grad_weight(self, g, h_chunk, grad_weight, first):
        # grad_weight.T (D, V) (+)= h_chunk.T @ g
        self._into(grad_weight.T, h_chunk.T, g.T, 0.0 if first else 1.0, trans_b=1)


def make_products(weight, n_threads):
    """ScipyProducts when SciPy is installed and weight is not empty, else NumpyProducts."""
    gemm = scipy_gemm(weight.dtype) if weight.size else None
    if gemm is None:
        return NumpyProducts(weight, n_threads)
    return ScipyProducts(weight, n_threads, gemm)


LINEAR_CROSS_ENTROPY = Loss(
    "linear_cross_entropy", "linear", inputs=("hidden", "weight", "target"),
    gradients=("hidden", "weight"), kernel="softmax_cross_entropy")


@LINEAR_CROSS_ENTROPY.declare
def linear_cross_entropy(hidden: ArrayLike, weight: ArrayLike, target: ArrayLike, *,
                         bias: ArrayLike | None = None, class_weight: ArrayLike | None = None,
                         ignore_index: int | None = None, label_smoothing: float = 0.0,
                         z_loss: float = 0.0, softcap: float | None = None,
                         sample_weight: ArrayLike | None = None, reduction: Reduction = "mean",
                         grad: bool = True, chunk_rows: int | None = None,
                         n_threads: int | None = None) -> LinearCrossEntropyGrad:
    """Cross-entropy of a linear output layer, without holding the (N, V) logits.

    The loss of ``softmax_cross_entropy(hidden @ weight.T + bias, target, ...)``
    (same options, same semantics, "mean" over nothing included) and its
    gradients with respect to the layer's input and parameters.  With
    X = hidden @ weight.T + bias the (N, V) logits and G = d loss / d X the
    gradient :func:`softmax_cross_entropy` returns::

        grad_hidden = G @ weight          (N, D)
        grad_weight = G.T @ hidden        (V, D)
        grad_bias   = sum_i G_i           (V,)

    The fast version takes the rows in chunks of ``chunk_rows``: each chunk's
    logits are made by one matrix product into one reused (chunk_rows, V)
    buffer, turned into their gradient in place by the fused cross-entropy
    kernel, and multiplied back (G_c @ weight into grad_hidden's rows,
    G_c.T @ hidden_c added to grad_weight: in place by SciPy's BLAS gemm
    when SciPy is installed, else by blocks of classes through one scratch
    array, since NumPy's matmul cannot accumulate into its output).
    The "mean" divisor is computed for the whole batch first, so each chunk's
    gradient is scaled as in the unfused call.  Peak memory above the inputs
    and the returned gradients: the chunk buffer and small arrays, plus
    without SciPy a scratch of at most 16 MiB (with more than one chunk and
    grad=True).  The NumPy twin,
    ``fastloss.reference.linear_cross_entropy``, computes the whole logits
    at once.

    Default chunk size: as many rows as fit in the memory budget of a
    tenth of the logits plus the weight's size, less the 16 MiB scratch,
    N V s / 10 + max(V D s - 16 MiB, 0) bytes for itemsize s (so the chunk
    and the scratch together stay within a tenth of the logits plus one
    weight-sized buffer), but at least 128 rows and at most as many rows as
    fit in 256 MiB, never more than N: each chunk costs one read of the
    weight per product and one read-modify-write pass over grad_weight, so
    larger chunks are faster (at N, D, V = 2_048, 512, 128_000, chunks of
    512 rows took 9% less time than chunks of 192 on one thread).  The rows
    are then shared evenly between the chunks this makes:
    ceil(N / ceil(N / rows)) rows each.  Below N and from 16 rows, the chunk
    is a multiple of 16 rows (the budget rounded down, the even share
    rounded up): the chunk's rows are a dimension of the three products,
    and BLAS ran them 15-20% slower at odd sizes (187 rows) than at 192.

    Threads: the matrix products run on the BLAS threads (SciPy's BLAS
    when SciPy is installed, else NumPy's; one BLAS call per product and
    chunk with SciPy, one per block of classes for grad_weight without), the
    cross-entropy of each chunk on one thread (the caller's), one after the
    other.  Not on fastloss's OpenMP team: after each product BLAS's worker
    threads spin-wait for the next one, and a second thread pool running the
    kernel meanwhile oversubscribes the cores (measured on 2 cores: the
    kernel 1.4 to 2 times slower on 2 OpenMP threads than on 1 between
    2-thread products, the whole call up to 1.5 times slower), while the
    kernel is about a tenth of the time.  With ``n_threads=None`` BLAS uses
    its own default (all cores; its environment variables and threadpoolctl
    apply); with an int, BLAS is limited to that many threads for the call
    when threadpoolctl is installed (without it BLAS keeps its own setting).
    The sums of the products go through BLAS, whose order depends on the
    thread count: unlike the other losses, the results are not bit-identical
    for every ``n_threads``.

    Accuracy: float64 agrees with the unfused float64 call to about 1e-13
    relative, element by element (the chunked sums differ in order only);
    in float32 the products' own rounding dominates (the logits and
    gradients are those of float32 matrix products).

    Args:
      hidden: (N, D) inputs of the output layer.
      weight: (V, D) projection, as ``torch.nn.Linear(D, V).weight``.
      target: (N,) integer class labels in [0, V) (or ``ignore_index``).
      bias: optional (V,) bias.
      class_weight: optional (V,) weight of each class (torch's ``weight``).
      ignore_index: None, or a label value whose rows are skipped.
      label_smoothing: eps in [0, 1].
      z_loss: the weight of the z-loss z lse^2 of each row (0: none), as in
        :func:`softmax_cross_entropy`.
      softcap: None, or c > 0: the logits are capped to c tanh(x / c) before
        the softmax, as in :func:`softmax_cross_entropy` (the gradients then
        carry the cap's slope).
      sample_weight: optional (N,) weights, one per row; each also weights
        that row's share of the "mean" denominator.
      reduction: "mean" (sum_i s_i loss_i / sum_i s_i w_{y_i} over the rows
        not ignored), "sum" or "none" (per-row s_i loss_i).
      grad: compute the gradients (False skips all gradient work).
      chunk_rows: rows per chunk (an int >= 1), or None for the rule above.
      n_threads: None for BLAS's default thread count, or a thread count for
        the products (see Threads above).

    Returns:
      LinearCrossEntropyGrad(loss, grad_hidden, grad_weight, grad_bias): the
      reduced loss (a float, or an (N,) array for "none") and its gradients,
      new arrays in the computation dtype (float32 when hidden, weight and
      bias are all float32, else float64); grad_bias is None without a bias,
      and every gradient is None with grad=False.  For "none" the gradients
      are those of the sum of the per-row losses.

    References:
      Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models",
      2024; Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM
      Training", 2024 (fused linear cross-entropy on GPUs).

    Examples:
      >>> import numpy as np, fastloss
      >>> hidden = np.array([[1.0, 0.0]])
      >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
      >>> result = fastloss.linear_cross_entropy(hidden, weight, [0])
      >>> round(result.loss, 6)  # -log(e / (e + 2))
      0.551445
      >>> result.grad_weight.shape
      (3, 2)
    """
    prep = prepare_linear(hidden, weight, target, bias, class_weight, ignore_index,
                          label_smoothing, z_loss, softcap, sample_weight, reduction, grad,
                          chunk_rows, n_threads)
    return run_chunks(prep, make_products(prep.weight, prep.n_threads))


def run_chunks(prep, products):
    """The chunk loop of linear_cross_entropy on prepared arguments, with the given
    products (NumpyProducts, or torch's in fastloss.torch)."""
    row_weights, kernel_reduction, denominator = _row_weights(prep)
    if denominator == 0:
        return _empty_mean(prep)
    h, dtype = prep.hidden, prep.dtype
    n_rows, n_classes = h.shape[0], prep.weight.shape[0]
    rows = prep.chunk_rows or default_chunk_rows(n_rows, n_classes, h.shape[1], dtype.itemsize)
    rows = max(1, min(rows, n_rows))
    buffer = np.empty((rows, n_classes), dtype)
    losses = np.empty(n_rows, dtype) if prep.reduction == "none" else None
    total = 0.0
    grad_hidden = grad_weight = grad_bias = None
    if prep.grad:
        grad_hidden = np.empty(h.shape, dtype)
        grad_weight = np.zeros(prep.weight.shape, dtype)    # zeros: the result when N == 0
        if prep.bias is not None:
            grad_bias = np.zeros(n_classes, np.float64)
            bias_sums = np.empty(n_classes, np.float64)     # one chunk's column sums
            column_sums = _dispatch.multiclass_kernels.column_sums
    with products.threads():
        for start in range(0, n_rows, rows):
            stop = min(start + rows, n_rows)
            h_chunk, logits = h[start:stop], buffer[:stop - start]
            products.logits(h_chunk, logits)
            if prep.bias is not None:
                np.add(logits, prep.bias, out=logits)
            loss, g = softmax_cross_entropy(
                logits, prep.labels[start:stop], class_weight=prep.class_weight,
                ignore_index=prep.ignore_index, label_smoothing=prep.label_smoothing,
                z_loss=prep.z_loss, softcap=prep.softcap,
                sample_weight=None if row_weights is None else row_weights[start:stop],
                reduction=kernel_reduction, grad=prep.grad,
                out=logits if prep.grad else None, n_threads=1)     # (see Threads)
            if losses is not None:
                losses[start:stop] = loss
            else:
                total += loss
            if not prep.grad:
                continue
            products.grad_hidden(g, grad_hidden[start:stop])
            products.add_grad_weight(g, h_chunk, grad_weight, first=start == 0)
            if grad_bias is not None:
                column_sums(g, bias_sums)           # np.sum(g, axis=0, dtype=float64)
                np.add(grad_bias, bias_sums, out=grad_bias)
    if grad_bias is not None:
        grad_bias = grad_bias.astype(dtype, copy=False)
    loss = losses if losses is not None else total
    return LinearCrossEntropyGrad(loss, grad_hidden, grad_weight, grad_bias)
