# What the compiled call paths (_fastpath, _torch_calls) and the kernels share of a
# call's arguments: the reduction's code and the "mean" divisor of class labels.

from fastloss._parallel cimport CompensatedSum, compensated_add, compensated_result


cdef inline int reduction_code(object reduction):
    """0 "mean", 1 "sum", 2 "none", -1 anything else (the Python path's error)."""
    if type(reduction) is not str:
        return -1
    if reduction == "mean":
        return 0
    if reduction == "sum":
        return 1
    if reduction == "none":
        return 2
    return -1


cdef inline double label_weight_total(const Py_ssize_t* labels, Py_ssize_t n_rows,
                                      Py_ssize_t n_classes, const double* class_weight,
                                      const double* sample_weight, bint has_ignore,
                                      Py_ssize_t ignore_index, bint* bad) noexcept nogil:
    """sum_i s_i w_{y_i} over the rows whose label is not ignore_index (s_i, w_c 1 where
    their array is NULL), compensated: torch's "mean" divisor of class labels.

    With class weights, a label outside [0, n_classes) and not ignore_index sets
    ``*bad`` and ends the pass there (it is never read with): the sum is then
    partial.  Without, the labels are not read with, nor checked.
    """
    cdef CompensatedSum total = CompensatedSum(0.0, 0.0)
    cdef Py_ssize_t i, label
    cdef double w
    for i in range(n_rows):
        label = labels[i]
        if has_ignore and label == ignore_index:
            continue
        w = 1.0
        if class_weight != NULL:
            if <size_t>label >= <size_t>n_classes:
                bad[0] = True
                break
            w = class_weight[label]
        if sample_weight != NULL:
            w = w * sample_weight[i]
        compensated_add(&total, w)
    return compensated_result(total)
