# cython: language_level=3
"""Small kernels of fastloss.torch: the losses on log-probabilities, and the
layout change of (N, C, d1, ...) class scores.

Design: ``nll_loss`` and ``kl_div`` take log-probabilities, so their
gradients need no softmax: nll_loss's is a scatter (-w_y / denominator at the
label, 0 elsewhere) and kl_div's is -target (or -exp(target)) times the
reduction's scale, written in the same pass that sums the loss.  Both follow
torch's arithmetic element by element in the tensor's dtype (so that a
"none" result is torch's to the last bit up to the 1-ulp exp and log of
_vecmath.h), and sum in float64 in an order fixed by the shape alone, so
that results are bit-identical for every thread count.

``channels_last`` and ``channels_first`` move the class axis of
(N, C, S) scores to the end and back, so that the row kernels of
cross-entropy can read (N * S, C) rows: blocked transposes, a tile of
TILE x TILE values at a time, whose reads and writes stay in
the L1 cache.
"""

from cython.parallel cimport prange
from libc.stdint cimport int64_t

from fastloss._parallel cimport (ChunkPlan, plan_chunks, resolve_threads, sum_span,
                                 sum_in_order, MAX_CHUNKS, SPAN)

cdef extern from "_vecmath.h" nogil:
    # Branch-free exp and log that the compiler vectorises (about 1 ulp).
    double fl_exp(double x)
    double fl_log(double x)
    float fl_expf(float x)
    float fl_logf(float x)

ctypedef fused floating:
    float
    double


# --- nll_loss -----------------------------------------------------------------

def nll_loss(
    const floating[:, :, ::1] input,    # IN  (N, C, S) log-probabilities
    const int64_t[::1] labels,          # IN  (N * S,) class labels, position n * S + s
    const double[::1] class_weight,     # IN  (C,) class weights w_c, or (0,) for none
    int64_t ignore_index,
    bint mean,
    floating[::1] loss_out,             # OUT (N * S,) per-position losses, or (0,)
    floating[:, :, ::1] grad_out,       # OUT (N, C, S) zero-filled, or (0, 0, 0)
):
    """torch's nll_loss of (N, C, S) log-probabilities: (first_bad, total, denominator).

    loss_i = -w_{y_i} x[n, y_i, s] at position i = n * S + s, 0 where y_i is
    ``ignore_index``; ``denominator`` is sum_i w_{y_i} over the positions not
    ignored (torch's "mean" denominator), ``total`` the sum of the losses.
    The gradient of the total (of the mean when ``mean``) is written at the
    labels into ``grad_out``, which the caller zero-fills.

    first_bad is the first position whose label is neither in [0, C) nor
    ``ignore_index`` (-1 if none); then, and for a "mean" over nothing
    (denominator 0), nothing is written and the caller lets torch compute
    (its error, its NaN).
    """
    cdef Py_ssize_t n_batch = input.shape[0], n_classes = input.shape[1]
    cdef Py_ssize_t n_positions = input.shape[2]
    cdef Py_ssize_t n, s, i, first_bad = -1
    cdef bint weighted = class_weight.shape[0] > 0
    cdef bint write_loss = loss_out.shape[0] > 0
    cdef bint write_grad = grad_out.shape[0] > 0
    cdef int64_t label
    cdef double w, value, scale, total = 0.0, denominator = 0.0
    with nogil:
        # The labels first: nothing is written for a call torch must answer.
        for i in range(n_batch * n_positions):
            label = labels[i]
            if label == ignore_index:
                continue
            if label < 0 or label >= n_classes:
                first_bad = i
                break
            denominator += class_weight[label] if weighted else 1.0
    if first_bad >= 0:
        return first_bad, 0.0, 0.0
    if mean and denominator == 0.0:
        return -1, 0.0, 0.0
    scale = 1.0 / denominator if mean else 1.0
    with nogil:
        for n in range(n_batch):
            for s in range(n_positions):
                i = n * n_positions + s
                label = labels[i]
                if label == ignore_index:
                    if write_loss:
                        loss_out[i] = 0
                    continue
                w = class_weight[label] if weighted else 1.0
                # a float32 x times a float64 weight (a float32 one widened)
                # is exact: rounding it once gives torch's float32 product
                value = -(w * input[n, label, s])
                total += value
                if write_loss:
                    loss_out[i] = <floating>value
                if write_grad:
                    grad_out[n, label, s] = <floating>(-w * scale)
    return -1, total, denominator


# --- kl_div -------------------------------------------------------------------

cdef inline floating xlogy_self(floating t) noexcept nogil:
    """t log t with 0 log 0 = 0, as torch's xlogy(t, t): NaN for NaN or t < 0."""
    if floating is float:
        return 0 if t == 0 else t * fl_logf(t)
    else:
        return 0 if t == 0 else t * fl_log(t)


cdef inline floating exp_of(floating t) noexcept nogil:
    if floating is float:
        return fl_expf(t)
    else:
        return fl_exp(t)


cdef inline double span_kl_div(
    const floating* x,                 # IN  n log-probabilities
    const floating* t,                 # IN  n targets (log-probabilities if log_target)
    Py_ssize_t n,                      # n <= SPAN
    bint log_target,
    floating* loss_out,                # OUT n losses, or NULL
    floating* grad_out,                # OUT n values of d loss / d x, or NULL
    floating scale,                    # the reduction's factor of the gradient
) noexcept nogil:
    """The losses of n elements (returned summed) and their gradient.

    Element by element as torch computes them, in the tensor's dtype:
    xlogy(t, t) - t x, d/dx = -t; with log_target, exp(t) (t - x),
    d/dx = -exp(t).  (d/dx times the incoming scale is -(scale t), the
    order of torch's backward.)
    """
    cdef double losses[SPAN]
    cdef floating value, e
    cdef Py_ssize_t j
    if log_target:
        if grad_out != NULL:
            for j in range(n):
                e = exp_of(t[j])
                value = e * (t[j] - x[j])
                losses[j] = value
                grad_out[j] = -(scale * e)
        else:
            for j in range(n):
                value = exp_of(t[j]) * (t[j] - x[j])
                losses[j] = value
    else:
        if grad_out != NULL:
            for j in range(n):
                value = xlogy_self(t[j]) - t[j] * x[j]
                losses[j] = value
                grad_out[j] = -(scale * t[j])
        else:
            for j in range(n):
                value = xlogy_self(t[j]) - t[j] * x[j]
                losses[j] = value
    if loss_out != NULL:
        for j in range(n):
            loss_out[j] = <floating>losses[j]
    return sum_span(losses, n)


cdef double chunk_kl_div(
    const floating[::1] input, const floating[::1] target, bint log_target,
    floating[::1] loss_out, floating[::1] grad_out, floating scale,
    Py_ssize_t start, Py_ssize_t stop,
) noexcept nogil:
    """The summed losses of elements [start, stop), span by span."""
    cdef double total = 0.0
    cdef Py_ssize_t i = start, n
    cdef floating* loss_ptr = NULL
    cdef floating* grad_ptr = NULL
    while i < stop:
        n = min(SPAN, stop - i)
        loss_ptr = &loss_out[i] if loss_out.shape[0] > 0 else NULL
        grad_ptr = &grad_out[i] if grad_out.shape[0] > 0 else NULL
        total += span_kl_div(&input[i], &target[i], n, log_target, loss_ptr, grad_ptr, scale)
        i += n
    return total


def kl_div(
    const floating[::1] input,          # IN  (n,) log-probabilities
    const floating[::1] target,         # IN  (n,) probabilities, or log-probabilities
    bint log_target,
    floating[::1] loss_out,             # OUT (n,) per-element losses, or (0,)
    floating[::1] grad_out,             # OUT (n,) grad_scale * d loss / d input, or (0,)
    double grad_scale,
    int n_threads,
):
    """torch's kl_div of flattened tensors: the float64 sum of the element losses.

    Per element: target (log target - input) with 0 log 0 = 0 (torch's xlogy),
    or with ``log_target`` exp(target) (target - input).  The gradient is
    -target (-exp(target)) times ``grad_scale`` rounded to the dtype (torch's
    1 / N of a mean).  Chunks of fixed size, summed in order.
    """
    cdef Py_ssize_t n_elements = input.shape[0]
    cdef ChunkPlan plan = plan_chunks(n_elements, 1)
    cdef double partial[MAX_CHUNKS]
    cdef floating scale = <floating>grad_scale
    cdef Py_ssize_t c, stop
    if n_elements == 0:
        return 0.0
    n_threads = resolve_threads(n_threads, plan.n_chunks)
    if n_threads == 1:
        with nogil:
            for c in range(plan.n_chunks):
                stop = min((c + 1) * plan.rows_per_chunk, n_elements)
                partial[c] = chunk_kl_div(input, target, log_target, loss_out, grad_out, scale,
                                          c * plan.rows_per_chunk, stop)
    else:
        for c in prange(plan.n_chunks, nogil=True, schedule="static", num_threads=n_threads):
            stop = min((c + 1) * plan.rows_per_chunk, n_elements)
            partial[c] = chunk_kl_div(input, target, log_target, loss_out, grad_out, scale,
                                      c * plan.rows_per_chunk, stop)
    return sum_in_order(partial, plan.n_chunks)


# --- the class axis of (N, C, S) scores moved last and back ------------------------

cdef enum:
    TILE = 32       # a tile is TILE x TILE values (8 KiB of float64 read, 8 written)


cdef inline void transpose_tile(const floating* src, Py_ssize_t src_stride,
                                floating* dst, Py_ssize_t dst_stride,
                                Py_ssize_t n_src_rows, Py_ssize_t n_src_columns) noexcept nogil:
    """dst[j, i] = src[i, j] for an n_src_rows x n_src_columns tile (row strides given)."""
    cdef Py_ssize_t i, j
    for j in range(n_src_columns):
        for i in range(n_src_rows):
            dst[j * dst_stride + i] = src[i * src_stride + j]


cdef void move_axis(const floating* src, floating* dst, Py_ssize_t n_batch,
                    Py_ssize_t n_rows, Py_ssize_t n_columns, int n_threads) noexcept nogil:
    """dst[n, j, i] = src[n, i, j] for (n_batch, n_rows, n_columns) src, tile by tile."""
    cdef Py_ssize_t row_tiles = (n_rows + TILE - 1) // TILE
    cdef Py_ssize_t column_tiles = (n_columns + TILE - 1) // TILE
    cdef Py_ssize_t n_tiles = n_batch * row_tiles * column_tiles
    cdef Py_ssize_t size = n_rows * n_columns
    cdef Py_ssize_t k, n, rest, i0, j0
    for k in prange(n_tiles, schedule="static", num_threads=n_threads):
        n = k // (row_tiles * column_tiles)
        rest = k - n * (row_tiles * column_tiles)
        # tiles in the order of src's rows, so that a thread reads one stretch
        i0 = (rest // column_tiles) * TILE
        j0 = (rest % column_tiles) * TILE
        transpose_tile(src + n * size + i0 * n_columns + j0, n_columns,
                       dst + n * size + j0 * n_rows + i0, n_rows,
                       min(TILE, n_rows - i0), min(TILE, n_columns - j0))


def channels_last(const floating[:, :, ::1] src, floating[:, :, ::1] dst, int n_threads):
    """dst[n, s, c] = src[n, c, s]: (N, C, S) scores as (N, S, C) rows."""
    if src.shape[0] * src.shape[1] * src.shape[2] == 0:
        return
    n_threads = resolve_threads(n_threads, src.shape[0] * src.shape[2] // 4096 + 1)
    with nogil:
        move_axis(&src[0, 0, 0], &dst[0, 0, 0], src.shape[0], src.shape[1], src.shape[2],
                  n_threads)


def channels_first(const floating[:, :, ::1] src, floating[:, :, ::1] dst, int n_threads):
    """dst[n, c, s] = src[n, s, c]: (N, S, C) rows back to (N, C, S)."""
    if src.shape[0] * src.shape[1] * src.shape[2] == 0:
        return
    n_threads = resolve_threads(n_threads, src.shape[0] * src.shape[1] // 4096 + 1)
    with nogil:
        move_axis(&src[0, 0, 0], &dst[0, 0, 0], src.shape[0], src.shape[1], src.shape[2],
                  n_threads)
