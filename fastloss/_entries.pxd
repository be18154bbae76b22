# The kernels' pointer-level entries: what the compiled call path (_fastpath) calls.
#
# Each kernel module (baseline and x86-64-v3 builds alike) exports ENTRIES, a
# dict of PyCapsules wrapping these C functions; _fastpath reads the chosen
# build's table once (fastloss._dispatch picks the build) and then calls the
# kernel's one-chunk loop on the arrays' data pointers, with no memoryview, no
# view and no Python argument of its own.  The capsule names carry the
# signature's version: a module and a _fastpath built from different sources
# fail at import instead of calling with the wrong arguments.

cdef enum:
    # The most own parameters an elementwise entry takes (poisson_nll: three).
    ENTRY_MAX_VALUES = 4
    # The status bits of a cross-entropy entry (the multiclass kernels' own).
    ENTRY_OUT_OF_MEMORY = 2         # a row's scratch could not be allocated
    ENTRY_BAD_LABELS = 4            # a label outside [0, C) and not ignore_index

cdef extern from *:
    """
    #define FL_ELEMENTWISE_ENTRY_FLOAT "fastloss.elementwise_entry.float.v1"
    #define FL_ELEMENTWISE_ENTRY_DOUBLE "fastloss.elementwise_entry.double.v1"
    #define FL_SEVERAL_ENTRY_FLOAT "fastloss.several_entry.float.v1"
    #define FL_SEVERAL_ENTRY_DOUBLE "fastloss.several_entry.double.v1"
    #define FL_CROSS_ENTROPY_ENTRY_FLOAT "fastloss.cross_entropy_entry.float.v1"
    #define FL_CROSS_ENTROPY_ENTRY_DOUBLE "fastloss.cross_entropy_entry.double.v1"
    #define FL_CROSS_ENTROPY_OPTIONS_ENTRY_FLOAT "fastloss.cross_entropy_options_entry.float.v1"
    #define FL_CROSS_ENTROPY_OPTIONS_ENTRY_DOUBLE "fastloss.cross_entropy_options_entry.double.v1"
    """
    const char* FL_ELEMENTWISE_ENTRY_FLOAT
    const char* FL_ELEMENTWISE_ENTRY_DOUBLE
    const char* FL_SEVERAL_ENTRY_FLOAT
    const char* FL_SEVERAL_ENTRY_DOUBLE
    const char* FL_CROSS_ENTROPY_ENTRY_FLOAT
    const char* FL_CROSS_ENTROPY_ENTRY_DOUBLE
    const char* FL_CROSS_ENTROPY_OPTIONS_ENTRY_FLOAT
    const char* FL_CROSS_ENTROPY_OPTIONS_ENTRY_DOUBLE

# An elementwise loss on n elements laid out flat (one weight per element, or
# weight NULL), as the def kernel's one chunk of a flat (n, 1) call: the same
# spans, the same sums, bit for bit.  values: the loss's own parameters in
# declared order, as doubles (a flag 0.0 or 1.0).  loss_out, grad_out: n
# values, or NULL.  *seen: the TARGET_* bits of the values met.  Returns the
# float64 sum of w * loss.  Only for n within one chunk (plan_chunks(n, 1)).
ctypedef double (*ElementwiseEntryFloat)(
    const float* pred, const float* target, const double* weight, Py_ssize_t n,
    float* loss_out, float* grad_out, double grad_scale, const double* values,
    int* seen) noexcept nogil
ctypedef double (*ElementwiseEntryDouble)(
    const double* pred, const double* target, const double* weight, Py_ssize_t n,
    double* loss_out, double* grad_out, double grad_scale, const double* values,
    int* seen) noexcept nogil

# The same for a loss with a third input and its gradient (gaussian_nll's var):
# the third input, its gradient (NULL, or n values) and the rest as above, every
# array of n values laid out flat (the third input of the predictions' shape).
ctypedef double (*SeveralEntryFloat)(
    const float* pred, const float* target, const float* third, const double* weight,
    Py_ssize_t n, float* loss_out, float* grad_out, float* grad_third_out, double grad_scale,
    const double* values, int* seen) noexcept nogil
ctypedef double (*SeveralEntryDouble)(
    const double* pred, const double* target, const double* third, const double* weight,
    Py_ssize_t n, double* loss_out, double* grad_out, double* grad_third_out,
    double grad_scale, const double* values, int* seen) noexcept nogil

# softmax_cross_entropy with class labels and every option at its default, on
# (n_rows, n_classes) logits within one chunk: the def kernel's chunk, bit for
# bit.  *status: the chunk's status bits (ENTRY_OUT_OF_MEMORY; ENTRY_BAD_LABELS:
# a label outside [0, n_classes), whose row and those after it in its span get
# loss 0 and a zero gradient: the caller raises).
ctypedef double (*CrossEntropyEntryFloat)(
    const float* x, Py_ssize_t n_rows, Py_ssize_t n_classes, const Py_ssize_t* labels,
    const double* sample_weight, float* loss_out, float* grad_out, double grad_scale,
    int* status) noexcept nogil
ctypedef double (*CrossEntropyEntryDouble)(
    const double* x, Py_ssize_t n_rows, Py_ssize_t n_classes, const Py_ssize_t* labels,
    const double* sample_weight, double* loss_out, double* grad_out, double grad_scale,
    int* status) noexcept nogil

# softmax_cross_entropy's options with class labels, as the def kernel's arguments
# (fastloss._multiclass._call_kernel) after their checks.
cdef struct CrossEntropyOptions:
    const double* class_weight      # (n_classes,) w_c, or NULL
    double label_smoothing          # eps in [0, 1]
    bint has_ignore
    Py_ssize_t ignore_index         # the ignored label when has_ignore
    double z_loss                   # >= 0, 0: none
    double softcap                  # > 0, 0: none

# softmax_cross_entropy with class labels and any options: as the entry above,
# with the options and the Hessian's diagonal (hess_out: NULL, or (n_rows,
# n_classes) with grad_out; not with z_loss or softcap).
ctypedef double (*CrossEntropyOptionsEntryFloat)(
    const float* x, Py_ssize_t n_rows, Py_ssize_t n_classes, const Py_ssize_t* labels,
    const double* sample_weight, const CrossEntropyOptions* options, float* loss_out,
    float* grad_out, float* hess_out, double grad_scale, int* status) noexcept nogil
ctypedef double (*CrossEntropyOptionsEntryDouble)(
    const double* x, Py_ssize_t n_rows, Py_ssize_t n_classes, const Py_ssize_t* labels,
    const double* sample_weight, const CrossEntropyOptions* options, double* loss_out,
    double* grad_out, double* hess_out, double grad_scale, int* status) noexcept nogil
