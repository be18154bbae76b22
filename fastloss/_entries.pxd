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

cdef extern from *:
    """
    #define FL_ELEMENTWISE_ENTRY_FLOAT "fastloss.elementwise_entry.float.v1"
    #define FL_ELEMENTWISE_ENTRY_DOUBLE "fastloss.elementwise_entry.double.v1"
    #define FL_CROSS_ENTROPY_ENTRY_FLOAT "fastloss.cross_entropy_entry.float.v1"
    #define FL_CROSS_ENTROPY_ENTRY_DOUBLE "fastloss.cross_entropy_entry.double.v1"
    """
    const char* FL_ELEMENTWISE_ENTRY_FLOAT
    const char* FL_ELEMENTWISE_ENTRY_DOUBLE
    const char* FL_CROSS_ENTROPY_ENTRY_FLOAT
    const char* FL_CROSS_ENTROPY_ENTRY_DOUBLE

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

# softmax_cross_entropy with class labels and every option at its default, on
# (n_rows, n_classes) logits within one chunk: the def kernel's chunk, bit for
# bit.  labels must be in [0, n_classes) (the caller checks).  *status: the
# chunk's status bits (2: out of memory).
ctypedef double (*CrossEntropyEntryFloat)(
    const float* x, Py_ssize_t n_rows, Py_ssize_t n_classes, const Py_ssize_t* labels,
    const double* sample_weight, float* loss_out, float* grad_out, double grad_scale,
    int* status) noexcept nogil
ctypedef double (*CrossEntropyEntryDouble)(
    const double* x, Py_ssize_t n_rows, Py_ssize_t n_classes, const Py_ssize_t* labels,
    const double* sample_weight, double* loss_out, double* grad_out, double grad_scale,
    int* status) noexcept nogil
