# cython: language_level=3
"""The per-call label check of fastloss.torch, in one compiled pass.

The fused multiclass kernels read ``x[i, labels[i]]`` without checking the
label (the NumPy API checks every label before it calls them), so the torch
adapter must prove each label is in [0, C) or ignored before a kernel runs.
Done with NumPy reductions this costs two passes and microseconds per call,
as much as the kernel itself on a small batch; here it is one loop, which
also sums the "mean" denominator of cross-entropy on the way.
"""
from libc.stdint cimport int64_t


def scan_labels(const int64_t[::1] labels, Py_ssize_t n_classes, bint has_ignore,
                int64_t ignore_index, const double[::1] class_weight):
    """(first_bad, counted_weight) of class labels, in one pass.

    first_bad       the position of the first label that is neither in
                    [0, n_classes) nor ignored, or -1 if none is
    counted_weight  sum_i w_{y_i} over the labels not ignored (their count
                    without class weights): torch's "mean" denominator;
                    0.0 when a label is bad
    has_ignore      whether labels equal to ``ignore_index`` are ignored
    class_weight    (C,) float64 class weights w_c, or (0,) for none
    """
    cdef Py_ssize_t i, n_rows = labels.shape[0]
    cdef bint weighted = class_weight.shape[0] > 0
    cdef Py_ssize_t first_bad = -1, counted = 0
    cdef int64_t label
    cdef bint kept, bad = False
    cdef double total = 0.0
    if not weighted:
        # Without weights the total is a count: integer sums and no branch per
        # label (a float sum would wait on each addition); the position of a bad
        # label is looked for only when there is one.
        with nogil:
            for i in range(n_rows):
                label = labels[i]
                kept = (not has_ignore) | (label != ignore_index)
                bad |= kept & ((label < 0) | (label >= n_classes))
                counted += kept
        if not bad:
            return -1, <double>counted
    with nogil:
        for i in range(n_rows):
            label = labels[i]
            if has_ignore and label == ignore_index:
                continue
            if label < 0 or label >= n_classes:
                first_bad = i
                total = 0.0
                break
            total += class_weight[label] if weighted else 1.0
    return first_bad, total
