# cython: language_level=3
"""Small kernels of fastloss.torch: the losses on log-probabilities, and
cross-entropy over (N, C, d1, ...) scores in their own layout.

Design: ``nll_loss`` and ``kl_div`` take log-probabilities, so their
gradients need no softmax: nll_loss's is a scatter (-w_y / denominator at the
label, 0 elsewhere) and kl_div's is -target (or -exp(target)) times the
reduction's scale, written in the same pass that sums the loss.  Both follow
torch's arithmetic element by element in the tensor's dtype (so that a
"none" result is torch's to the last bit up to the 1-ulp exp and log of
_vecmath.h).  ``spatial_cross_entropy`` computes the softmax of blocks of
positions class plane by class plane (see its section).  Sums are taken in
float64 in an order fixed by the shape alone, so that results are
bit-identical for every thread count.
"""

from cython.parallel cimport prange
from libc.limits cimport INT_MAX
from libc.math cimport INFINITY, fabs
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset

from fastloss._parallel cimport (ChunkPlan, plan_chunks, resolve_threads, sum_span,
                                 sum_in_order, MAX_CHUNKS, SPAN, build_facts)

cdef extern from "_vecmath.h" nogil:
    # Branch-free exp and log that the compiler vectorises (about 1 ulp).
    double fl_exp(double x)
    double fl_log(double x)
    float fl_expf(float x)
    float fl_expf_nonpositive(float a)      # fl_expf's bits for a <= 0, fewer operations
    float fl_logf(float x)
    float fl_logf_core(float u, float c)    # log(u) + c for a normal u > 0, c small
    # block_cross_entropy's plane loops over groups of positions in registers
    # (float32, compiled in the x86-64-v3 build only: FL_SPATIAL_GROUPS)
    enum: FL_SPATIAL_GROUPS, FL_SPATIAL_GROUP
    void fl_spatial_max_planes_float(const float* x, const int* label, Py_ssize_t n_classes,
                                     Py_ssize_t stride, Py_ssize_t n, float* m, float* label_x)
    void fl_spatial_sum_planes_float(const float* e, const int* label, Py_ssize_t n_classes,
                                     Py_ssize_t stride, Py_ssize_t n, double* e_sum,
                                     float* label_e)
    void fl_spatial_label_terms_float(const int* label, const float* label_x, const float* m,
                                      const double* log_sum, const double* e_sum,
                                      const float* label_e, double scale, Py_ssize_t n,
                                      double* loss, float* coefficient, float* label_grad)
    void fl_spatial_grad_planes_float(const int* label, const float* coefficient,
                                      const float* label_grad, Py_ssize_t n_classes,
                                      Py_ssize_t stride, Py_ssize_t n, float* out)

# How this module was compiled: the tests prove which build is loaded.
BUILD = build_facts()

ctypedef fused floating:
    float
    double

cdef enum:
    # Positions of a block (nll_loss, spatial_cross_entropy): the per-position
    # values live on the stack, a block's planes in the L1 or L2 cache.
    BLOCK = 128


# --- labels -------------------------------------------------------------------

cdef double labels_denominator(
    const int64_t[::1] labels, Py_ssize_t n_classes, int64_t ignore_index,
    const double[::1] class_weight, Py_ssize_t* first_bad,
) noexcept nogil:
    """sum_i w_{y_i} over the labels not equal to ignore_index (their count
    without class weights): torch's "mean" denominator.  ``first_bad`` gets
    the position of the first label neither in [0, C) nor ignored (-1 if
    none; then the sum is 0).

    Without weights the sum is a count, in a loop without branches (it
    vectorises); the bad label's position is looked for only if there is one.
    """
    cdef Py_ssize_t i, n = labels.shape[0]
    cdef bint weighted = class_weight.shape[0] > 0
    cdef int64_t label, ignored = 0, bad = 0
    cdef uint64_t limit = <uint64_t>n_classes
    cdef double total = 0.0
    first_bad[0] = -1
    if not weighted:
        # (int64 lanes throughout; one unsigned comparison for [0, C))
        for i in range(n):
            label = labels[i]
            ignored += label == ignore_index
            bad |= (label != ignore_index) & (<uint64_t>label >= limit)
        if not bad:
            return <double>(n - ignored)
    for i in range(n):
        label = labels[i]
        if label == ignore_index:
            continue
        if label < 0 or label >= n_classes:
            first_bad[0] = i
            return 0.0
        total += class_weight[label] if weighted else 1.0
    return total


# --- nll_loss -----------------------------------------------------------------

cdef double block_nll_loss(
    const floating* x,                  # IN  log-probabilities of position s0: x[c * S + j]
    const int64_t* labels,              # IN  n labels (checked)
    const double* w,                    # IN  C class weights, or NULL for none
    int64_t ignore_index,
    Py_ssize_t n_classes,
    Py_ssize_t stride,                  # S
    Py_ssize_t n,                       # positions of the block
    double scale,                       # the reduction's factor of the gradient
    floating* loss_out,                 # OUT n losses, or NULL
    floating* grad_out,                 # OUT laid out as x (written whole), or NULL
) noexcept nogil:
    """The summed loss of n positions; their losses, and their gradient: zeros,
    and -w_y scale at each counted label (written together, while in cache)."""
    cdef double total = 0.0, w_y, value
    cdef int64_t y
    cdef Py_ssize_t c, j
    if grad_out != NULL:
        for c in range(n_classes):
            memset(grad_out + c * stride, 0, n * sizeof(floating))
    for j in range(n):
        y = labels[j]
        if y == ignore_index:
            if loss_out != NULL:
                loss_out[j] = 0
            continue
        w_y = w[y] if w != NULL else 1.0
        # a float32 x times a float64 weight (a float32 one widened) is exact:
        # rounding it once gives torch's float32 product
        value = -(w_y * x[y * stride + j])
        total += value
        if loss_out != NULL:
            loss_out[j] = <floating>value
        if grad_out != NULL:
            grad_out[y * stride + j] = <floating>(-w_y * scale)
    return total


cdef double rows_nll_loss(
    const floating* x,                  # IN  n rows of C log-probabilities
    const int64_t* labels,              # IN  n labels (checked)
    const double* w,                    # IN  C class weights, or NULL for none
    int64_t ignore_index,
    Py_ssize_t n_classes,
    Py_ssize_t n,
    double scale,
    floating* loss_out,                 # OUT n losses, or NULL
    floating* grad_out,                 # OUT n rows (written whole), or NULL
) noexcept nogil:
    """block_nll_loss of (N, C) rows (one position per sample): the n rows'
    gradient is one stretch of memory, zeroed at once."""
    cdef double total = 0.0, w_y, value
    cdef int64_t y
    cdef Py_ssize_t j
    if grad_out != NULL:
        memset(grad_out, 0, n * n_classes * sizeof(floating))
    for j in range(n):
        y = labels[j]
        if y == ignore_index:
            if loss_out != NULL:
                loss_out[j] = 0
            continue
        w_y = w[y] if w != NULL else 1.0
        value = -(w_y * x[j * n_classes + y])
        total += value
        if loss_out != NULL:
            loss_out[j] = <floating>value
        if grad_out != NULL:
            grad_out[j * n_classes + y] = <floating>(-w_y * scale)
    return total


cdef double chunk_nll_loss(
    const floating[:, :, ::1] input, const int64_t[::1] labels,
    const double[::1] class_weight, int64_t ignore_index, double scale,
    floating[::1] loss_out, floating[:, :, ::1] grad_out,
    Py_ssize_t first_block, Py_ssize_t stop_block,
) noexcept nogil:
    """The summed loss of blocks [first_block, stop_block) of BLOCK positions
    (sample after sample; BLOCK samples of (N, C) rows), in order."""
    cdef Py_ssize_t n_positions = input.shape[2]
    cdef Py_ssize_t per_sample = (n_positions + BLOCK - 1) // BLOCK
    cdef Py_ssize_t k, n, s0
    cdef double total = 0.0
    cdef const double* weights = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef floating* loss_at = NULL
    cdef floating* grad_at = NULL
    if n_positions == 1:
        for k in range(first_block, stop_block):
            n = k * BLOCK
            if loss_out.shape[0] > 0:
                loss_at = &loss_out[n]
            if grad_out.shape[0] > 0:
                grad_at = &grad_out[n, 0, 0]
            total += rows_nll_loss(&input[n, 0, 0], &labels[n], weights, ignore_index,
                                   input.shape[1], min(BLOCK, input.shape[0] - n), scale,
                                   loss_at, grad_at)
        return total
    for k in range(first_block, stop_block):
        n = k // per_sample
        s0 = (k - n * per_sample) * BLOCK
        if loss_out.shape[0] > 0:
            loss_at = &loss_out[n * n_positions + s0]
        if grad_out.shape[0] > 0:
            grad_at = &grad_out[n, 0, s0]
        total += block_nll_loss(&input[n, 0, s0], &labels[n * n_positions + s0], weights,
                                ignore_index, input.shape[1], n_positions,
                                min(BLOCK, n_positions - s0), scale, loss_at, grad_at)
    return total


cdef inline tuple label_verdict(Py_ssize_t first_bad, bint mean, double denominator,
                                bint nothing_to_compute):
    """The result of a label kernel before its blocks run, or None when they must:
    (first_bad, 0, 0) for a bad label, (-1, 0, 0) for a "mean" over nothing (the
    caller lets torch compute both), (-1, 0, denominator) when there is nothing
    to compute."""
    if first_bad >= 0:
        return first_bad, 0.0, 0.0
    if mean and denominator == 0.0:
        return -1, 0.0, 0.0
    if nothing_to_compute:
        return -1, 0.0, denominator
    return None


def nll_loss(
    const floating[:, :, ::1] input,    # IN  (N, C, S) log-probabilities
    const int64_t[::1] labels,          # IN  (N * S,) class labels, position n * S + s
    const double[::1] class_weight,     # IN  (C,) class weights w_c, or (0,) for none
    int64_t ignore_index,
    bint mean,
    floating[::1] loss_out,             # OUT (N * S,) per-position losses, or (0,)
    floating[:, :, ::1] grad_out,       # OUT (N, C, S), written whole, or (0, 0, 0)
    int n_threads,
):
    """torch's nll_loss of (N, C, S) log-probabilities: (first_bad, total, denominator).

    loss_i = -w_{y_i} x[n, y_i, s] at position i = n * S + s, 0 where y_i is
    ``ignore_index``; ``denominator`` is sum_i w_{y_i} over the positions not
    ignored (torch's "mean" denominator), ``total`` the sum of the losses.
    The gradient of the total (of the mean when ``mean``) is written into
    ``grad_out``: zeros, and -w_y (/ denominator) at the labels.

    first_bad is the first position whose label is neither in [0, C) nor
    ``ignore_index`` (-1 if none); then, and for a "mean" over nothing
    (denominator 0), nothing is written and the caller lets torch compute
    (its error, its NaN).  The labels are checked in a pass of their own
    first; the loss is summed over blocks of BLOCK positions in chunks fixed
    by the shape, in order: the same result for every thread count.
    """
    cdef Py_ssize_t n_batch = input.shape[0], n_classes = input.shape[1]
    cdef Py_ssize_t n_positions = input.shape[2]
    # blocks of BLOCK positions of a sample, or of BLOCK samples of (N, C) rows
    cdef Py_ssize_t n_blocks = (n_batch * ((n_positions + BLOCK - 1) // BLOCK)
                                if n_positions > 1 else (n_batch + BLOCK - 1) // BLOCK)
    cdef ChunkPlan plan = plan_chunks(n_blocks, BLOCK * n_classes)
    cdef double partial[MAX_CHUNKS]
    cdef Py_ssize_t c, stop, first_bad
    cdef double scale, denominator
    with nogil:
        denominator = labels_denominator(labels, n_classes, ignore_index, class_weight,
                                         &first_bad)
    verdict = label_verdict(first_bad, mean, denominator, n_blocks == 0)
    if verdict is not None:
        return verdict
    scale = 1.0 / denominator if mean else 1.0
    n_threads = resolve_threads(n_threads, plan.n_chunks)
    if n_threads == 1:
        with nogil:
            for c in range(plan.n_chunks):
                stop = min((c + 1) * plan.rows_per_chunk, n_blocks)
                partial[c] = chunk_nll_loss(input, labels, class_weight, ignore_index, scale,
                                            loss_out, grad_out, c * plan.rows_per_chunk, stop)
    else:
        for c in prange(plan.n_chunks, nogil=True, schedule="static", num_threads=n_threads):
            stop = min((c + 1) * plan.rows_per_chunk, n_blocks)
            partial[c] = chunk_nll_loss(input, labels, class_weight, ignore_index, scale,
                                        loss_out, grad_out, c * plan.rows_per_chunk, stop)
    return -1, sum_in_order(partial, plan.n_chunks), denominator


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


cdef inline floating exp_nonpositive(floating t) noexcept nogil:
    """exp(t) for t <= 0 or NaN (a score minus its row's maximum)."""
    if floating is float:
        return fl_expf_nonpositive(t)
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


# --- cross-entropy over (N, C, S) scores, position by position -------------------------
#
# The classes of a position are S values apart; consecutive positions are
# contiguous.  So the softmax of a block of BLOCK positions is computed
# plane by plane, each class's BLOCK values a vector: pass 1 takes the
# maximum m over the classes, pass 2 the exponentials e_c = exp(x_c - m)
# (kept in the gradient's place) and their sum, then per position the loss;
# pass 3 turns e into the gradient.  No transpose, and every loop runs along
# contiguous memory for any number of classes.  The label's entries are
# found by comparing each plane's class with the labels (a select in the
# vectorised loops of passes 1 and 3), not by a gather and a scatter.
#
# With p = e / sum(e), log p_c = z_c - log sum(e) (z = x - m), label y,
# smoothing eps over C classes, class weights w (W = sum_c w_c), torch's
# loss of a position is
#     (1 - eps) w_y (-log p_y) + eps / C sum_c w_c (-log p_c)
#   = (1 - eps) w_y (L - z_y) + eps / C (W L - sum_c w_c z_c),    L = log sum(e)
# and its gradient (times the reduction's scale s)
#     s (p_c ((1 - eps) w_y + eps W / C) - eps / C w_c - (1 - eps) w_y [c = y]).
# For probability targets q_c = (1 - eps) t_c + eps / C (torch's smoothing):
#     loss = sum_c w_c q_c (L - z_c) = L sum_c w_c q_c - sum_c w_c q_c z_c,
#     gradient s (p_c sum_k w_k q_k - w_c q_c),
# where a zero w_c q_c times an infinite z_c counts 0.  Infinite scores follow
# the row kernel's rule (z = 0 at the maximum itself: +inf classes share the
# mass, a position of -inf scores is uniform), so that a loss does not depend
# on the layout of its scores; torch gives NaN for those.

cdef inline double log_of_sum(double e_sum, floating* kind) noexcept nogil:
    """log of a sum of exponentials (>= 1, the maximum's own term being 1): in
    float lanes for float32 scores (``kind`` selects), as log1p of the excess
    x = e_sum - 1 over 1, so that a small loss (p_y near 1) keeps its digits
    (the log of e_sum rounded to float erred by 41 ulps there); else in double.

    log1p(x) = log(u) + (x - (u - 1)) / u with u = fl(1 + x) (Goldberg's
    correction), fl_log1pf's own formula without its cases for x < 0, x
    infinite and u subnormal, which an excess in [0, C - 1] never meets (a NaN
    x gives NaN through the correction)."""
    cdef float excess, u, one = 1.0       # (float operations, as fl_log1pf's)
    if floating is float:
        excess = <float>(e_sum - 1.0)
        u = one + excess
        return fl_logf_core(u, (excess - (u - one)) / u)
    else:
        return fl_log(e_sum)


cdef inline floating shifted(floating x, floating m) noexcept nogil:
    """x - m, with 0 at the maximum itself: the row kernel's rule for infinite
    scores (+inf classes share the mass, a row of -inf is uniform)."""
    return 0 if x == m else x - m


cdef inline floating exp_difference(floating x, floating m, floating d) noexcept nogil:
    """exp(x - m) for x <= m, from d = x - m rounded (or shifted(x, m)).

    The rounding error of d is r = (x - m) - d, exactly, by TwoSum (no
    product, so nothing is contracted into an FMA); exp(x - m) = exp(d)
    (1 + r) to second order.  Without it exp(d) would err by |x - m| ulps
    relative (13 float ulps measured at x - m = -10).  r is NaN where x or
    m is infinite, or d is shifted's 0 at an infinite maximum: then 0.
    """
    cdef floating back = d - x
    cdef floating r = (x - (d - back)) - (m + back)
    cdef floating e = exp_nonpositive(d)
    r = r if r == r else 0
    return e + e * r


cdef inline double shifted_exactly(floating x, floating m) noexcept nogil:
    """shifted(x, m) in float64 (exact for float32 scores)."""
    return 0.0 if x == m else <double>x - <double>m


cdef inline double xmul(double a, double b) noexcept nogil:
    """a * b, except that 0 * inf is 0 (NaN still propagates)."""
    if a == 0.0 and fabs(b) == INFINITY:
        return 0.0
    return a * b


cdef double block_cross_entropy(
    const floating* x,                  # IN  scores of position s0 of one sample: x[c * S + j]
    const floating* target,             # IN  probabilities laid out as x, or NULL (labels)
    const int64_t* labels,              # IN  n labels (checked), or NULL (probabilities)
    const double* w,                    # IN  C class weights, or NULL for none
    double w_sum,                       # sum of the class weights (C without weights)
    Py_ssize_t n_classes,
    Py_ssize_t stride,                  # S
    Py_ssize_t n,                       # positions of the block, n <= BLOCK
    int64_t ignore_index,
    double eps,                         # label smoothing
    double scale,                       # the reduction's factor of the gradient
    floating* loss_out,                 # OUT n losses, or NULL
    floating* grad_out,                 # OUT laid out as x, or NULL
) noexcept nogil:
    """The summed loss of n positions; their losses and gradient (see above)."""
    cdef floating m[BLOCK]
    cdef double e_sum[BLOCK]             # sum of e over the classes
    cdef double log_sum[BLOCK]
    cdef floating label_x[BLOCK]         # x_y (labels)
    cdef int label[BLOCK]                # y, or -1 where ignored: no class (labels)
    cdef floating label_grad[BLOCK]      # the gradient's entry at y (labels)
    cdef double w_y[BLOCK]               # w_y (labels)
    cdef double wz[BLOCK]                # sum of w z (labels) or of w q z (probabilities)
    cdef double coefficient[BLOCK]       # of e in the gradient
    cdef double smoothing[BLOCK]         # of w_c in the gradient (labels)
    cdef double label_e[BLOCK]           # e_y (labels)
    cdef double label_term[BLOCK]        # s (1 - eps) w_y (labels)
    cdef double loss[BLOCK]
    cdef floating coefficient_t[BLOCK]
    cdef floating e_plane[BLOCK]         # e of one class when no gradient is written
    cdef floating label_e_t[BLOCK]       # e_y, taken in pass 2 (sum_in_groups)
    cdef floating smoothing_t[BLOCK]
    cdef double total = 0.0, wc, q, z_y, value
    cdef floating wc_t
    cdef double uniform = eps / n_classes
    cdef const floating* row
    cdef floating* out_row
    cdef Py_ssize_t c, j, finite
    # float32 blocks of a multiple of FL_SPATIAL_GROUP positions: pass 1 and
    # (the gradient written) pass 2's sums by the fl_spatial_*_planes_float,
    # the same arithmetic lane for lane (_vecmath.h, "spatial cross-entropy
    # planes")
    cdef bint groups = floating is float and FL_SPATIAL_GROUPS and n % FL_SPATIAL_GROUP == 0
    cdef bint sum_in_groups = groups and grad_out != NULL
    # ... and with labels, no weights or smoothing, the per-position step and
    # pass 3 too (fl_spatial_label_terms_float, fl_spatial_grad_planes_float)
    cdef bint plain = sum_in_groups and target == NULL and w == NULL and eps == 0.0
    cdef int class_c
    for j in range(n):
        m[j] = -INFINITY
        e_sum[j] = 0.0
        wz[j] = 0.0
    # pass 1: the maximum, and (labels) the label's score, selected by a
    # comparison in the plane's loop: no gather, the loop vectorises (no
    # label, -1, where ignored and for probabilities)
    for j in range(n):
        label[j] = <int>labels[j] if target == NULL and labels[j] != ignore_index else -1
        label_x[j] = 0
    if groups:
        if floating is float:
            fl_spatial_max_planes_float(x, label, n_classes, stride, n, m, label_x)
    else:
        for c in range(n_classes):
            row = x + c * stride
            class_c = <int>c
            for j in range(n):
                m[j] = row[j] if row[j] > m[j] else m[j]
                label_x[j] = row[j] if label[j] == class_c else label_x[j]
    # Decided once per block: with every maximum finite, shifted(x, m) is x - m.
    finite = 0
    for j in range(n):
        finite += fabs(m[j]) != INFINITY
    finite = finite == n
    # pass 2: exponentials, their sum, and the weighted sums of the smoothing
    # (labels) or of the targets (probabilities: coefficient holds sum w q)
    if target != NULL:
        for j in range(n):
            coefficient[j] = 0.0
    for c in range(n_classes):
        row = x + c * stride
        out_row = grad_out + c * stride if grad_out != NULL else NULL
        wc = w[c] if w != NULL else 1.0
        if out_row == NULL:
            out_row = e_plane
        # (two loops: each vectorises without the other's conversions)
        if finite:
            for j in range(n):
                out_row[j] = exp_difference(row[j], m[j], row[j] - m[j])
        else:
            for j in range(n):
                out_row[j] = exp_difference(row[j], m[j], shifted(row[j], m[j]))
        if not sum_in_groups:                     # (summed below)
            for j in range(n):
                e_sum[j] += out_row[j]
        if target != NULL:
            for j in range(n):
                q = wc * ((1.0 - eps) * target[c * stride + j] + uniform)
                coefficient[j] += q
                wz[j] += xmul(q, shifted(row[j], m[j]))
        elif eps != 0.0:
            for j in range(n):
                wz[j] += wc * shifted(row[j], m[j])
    if sum_in_groups:
        if floating is float:
            fl_spatial_sum_planes_float(grad_out, label, n_classes, stride, n, e_sum, label_e_t)
    # per position: the loss and the gradient's coefficients, in loops
    # without branches (they vectorise; the label's values are gathered)
    for j in range(n):
        log_sum[j] = log_of_sum(e_sum[j], <floating*>NULL)
    if plain:
        if floating is float:
            fl_spatial_label_terms_float(label, label_x, m, log_sum, e_sum, label_e_t, scale, n,
                                         loss, coefficient_t, label_grad)
    elif target != NULL:
        for j in range(n):
            loss[j] = log_sum[j] * coefficient[j] - wz[j]
            coefficient[j] = scale * coefficient[j] / e_sum[j]
    else:
        # (e_y computed again, as pass 2 did; the class weights gathered
        # where there are some)
        if grad_out != NULL:
            for j in range(n):
                label_e[j] = exp_difference(label_x[j], m[j], shifted(label_x[j], m[j]))
        for j in range(n):
            w_y[j] = 1.0
        if w != NULL:
            for j in range(n):
                if label[j] >= 0:
                    w_y[j] = w[label[j]]
        for j in range(n):
            z_y = shifted_exactly(label_x[j], m[j])
            value = (1.0 - eps) * w_y[j] * (log_sum[j] - z_y)
            if eps != 0.0:
                value = value + uniform * (w_sum * log_sum[j] - wz[j])
            loss[j] = value if label[j] >= 0 else 0.0
            coefficient[j] = (scale * ((1.0 - eps) * w_y[j] + uniform * w_sum) / e_sum[j]
                              if label[j] >= 0 else 0.0)
            smoothing[j] = scale * uniform if label[j] >= 0 else 0.0
            label_term[j] = scale * (1.0 - eps) * w_y[j] if label[j] >= 0 else 0.0
    # (eight independent sums: the positions' losses in one chain of dependent
    # additions cost 4 cycles each, a tenth of the block's time)
    total = sum_span(loss, n)
    if loss_out != NULL:
        for j in range(n):
            loss_out[j] = <floating>loss[j]
    if grad_out == NULL:
        return total
    if plain:
        if floating is float:
            fl_spatial_grad_planes_float(label, coefficient_t, label_grad, n_classes, stride, n,
                                         grad_out)
        return total
    # pass 3: e into the gradient, in the dtype's lanes (each value rounded
    # about twice: p_c and p_c - eps w_c / C are far from cancelling), except
    # at the label, where p_y - 1 cancels: its entry is rounded once, and
    # selected in the plane's loop (an ignored position has none)
    for j in range(n):
        coefficient_t[j] = <floating>coefficient[j]
        smoothing_t[j] = <floating>smoothing[j]
    if target == NULL:
        for j in range(n):
            label_grad[j] = <floating>(
                label_e[j] * coefficient[j] - w_y[j] * smoothing[j] - label_term[j])
    for c in range(n_classes):
        out_row = grad_out + c * stride
        wc = w[c] if w != NULL else 1.0
        if target != NULL:
            for j in range(n):
                q = wc * ((1.0 - eps) * target[c * stride + j] + uniform)
                out_row[j] = <floating>(out_row[j] * coefficient[j] - scale * q)
        else:
            wc_t = <floating>wc
            class_c = <int>c
            for j in range(n):
                out_row[j] = (label_grad[j] if label[j] == class_c else
                              out_row[j] * coefficient_t[j] - wc_t * smoothing_t[j])
    return total


cdef double chunk_cross_entropy(
    const floating[:, :, ::1] input, const floating[:, :, ::1] target,
    const int64_t[::1] labels, const double[::1] class_weight, double w_sum,
    int64_t ignore_index, double eps, double scale,
    floating[::1] loss_out, floating[:, :, ::1] grad_out,
    Py_ssize_t first_block, Py_ssize_t stop_block,
) noexcept nogil:
    """The summed loss of blocks [first_block, stop_block) (blocks of BLOCK
    positions of one sample, sample after sample), in order."""
    cdef Py_ssize_t n_positions = input.shape[2]
    cdef Py_ssize_t per_sample = (n_positions + BLOCK - 1) // BLOCK
    cdef Py_ssize_t k, n, s0
    cdef double total = 0.0
    cdef bint probabilities = target.shape[0] > 0
    cdef const floating* target_at = NULL
    cdef const int64_t* labels_at = NULL
    cdef const double* weights = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef floating* loss_at = NULL
    cdef floating* grad_at = NULL
    for k in range(first_block, stop_block):
        n = k // per_sample
        s0 = (k - n * per_sample) * BLOCK
        if probabilities:
            target_at = &target[n, 0, s0]
        else:
            labels_at = &labels[n * n_positions + s0]
        if loss_out.shape[0] > 0:
            loss_at = &loss_out[n * n_positions + s0]
        if grad_out.shape[0] > 0:
            grad_at = &grad_out[n, 0, s0]
        total += block_cross_entropy(
            &input[n, 0, s0], target_at, labels_at, weights, w_sum, input.shape[1],
            n_positions, min(BLOCK, n_positions - s0), ignore_index, eps, scale, loss_at,
            grad_at)
    return total


def spatial_cross_entropy(
    const floating[:, :, ::1] input,    # IN  (N, C, S) scores
    const floating[:, :, ::1] target,   # IN  (N, C, S) probabilities, or (0, 0, 0)
    const int64_t[::1] labels,          # IN  (N * S,) labels, or (0,) (probabilities)
    const double[::1] class_weight,     # IN  (C,) class weights, or (0,) for none
    int64_t ignore_index,
    double label_smoothing,
    bint mean,
    floating[::1] loss_out,             # OUT (N * S,) per-position losses, or (0,)
    floating[:, :, ::1] grad_out,       # OUT (N, C, S) gradient, or (0, 0, 0)
    int n_threads,
):
    """torch's cross_entropy of (N, C, S) scores, in their layout:
    (first_bad, total, denominator), total the float64 sum of the per-position
    losses (see the comment above for the formulas), denominator torch's
    "mean" denominator (labels: labels_denominator; probabilities: N S).

    The gradient written is that of the total, of total / denominator when
    ``mean``.  Labels equal to ``ignore_index`` count nothing (loss and
    gradient 0).  first_bad is the first position whose label is neither in
    [0, C) nor ``ignore_index`` (-1 if none); then, and for a "mean" over
    nothing (denominator 0), nothing is written and the caller lets torch
    compute (its error, its NaN).  C < 2**31 (the labels are compared as int).
    Blocks of BLOCK positions in chunks fixed by the shape, summed in order:
    the same result for every thread count.
    """
    cdef Py_ssize_t n_batch = input.shape[0], n_classes = input.shape[1]
    cdef Py_ssize_t n_positions = input.shape[2]
    cdef Py_ssize_t n_blocks = n_batch * ((n_positions + BLOCK - 1) // BLOCK)
    cdef ChunkPlan plan = plan_chunks(n_blocks, BLOCK * n_classes)
    cdef double partial[MAX_CHUNKS]
    cdef double w_sum = n_classes, scale, denominator = n_batch * n_positions
    cdef Py_ssize_t c, stop, first_bad = -1
    if n_classes > INT_MAX:
        raise ValueError("spatial_cross_entropy: more than INT_MAX classes")
    if target.shape[0] == 0:
        with nogil:
            denominator = labels_denominator(labels, n_classes, ignore_index, class_weight,
                                             &first_bad)
    verdict = label_verdict(first_bad, mean, denominator, n_blocks == 0 or n_classes == 0)
    if verdict is not None:
        return verdict
    scale = 1.0 / denominator if mean else 1.0
    if class_weight.shape[0] > 0:
        w_sum = 0.0
        for c in range(n_classes):
            w_sum += class_weight[c]
    n_threads = resolve_threads(n_threads, plan.n_chunks)
    if n_threads == 1:
        with nogil:
            for c in range(plan.n_chunks):
                stop = min((c + 1) * plan.rows_per_chunk, n_blocks)
                partial[c] = chunk_cross_entropy(
                    input, target, labels, class_weight, w_sum, ignore_index,
                    label_smoothing, scale, loss_out, grad_out,
                    c * plan.rows_per_chunk, stop)
    else:
        for c in prange(plan.n_chunks, nogil=True, schedule="static", num_threads=n_threads):
            stop = min((c + 1) * plan.rows_per_chunk, n_blocks)
            partial[c] = chunk_cross_entropy(
                input, target, labels, class_weight, w_sum, ignore_index,
                label_smoothing, scale, loss_out, grad_out,
                c * plan.rows_per_chunk, stop)
    return -1, sum_in_order(partial, plan.n_chunks), denominator
