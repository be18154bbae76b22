# The stable scalar maths, written once and shared by every kernel.
#
# Each function is a tiny inline `nogil` helper so that the C compiler can
# inline it into the vectorised loops.  The maths of each elementwise loss
# (its element function) sits beside its entry in _elementwise_kernels.pyx.tp;
# here are the pieces several losses share.

from libc.math cimport fabs, fabsf, INFINITY

cdef extern from "_vecmath.h" nogil:
    # Branch-free exp/log/log1p that the compiler vectorises (about 1 ulp).
    double fl_exp(double x)
    double fl_exp_for_float(double x)     # ~1e-8 relative, for float32 results
    double fl_exp_nonpositive_for_float(double a)   # the same for a <= 0, clamped at -104
    double fl_log(double x)
    double fl_log1p(double x)
    float fl_expf(float x)
    float fl_logf(float x)
    float fl_log1pf(float x)
    float fl_logf_core(float u, float c)
    float fl_expf_nonpositive(float a)
    float fl_log1pf_unit(float e, float inv_u)
    double fl_log_core_split(double u, double c, double* hi)
    double fl_log_core_split_low(double u, double c, double* hi, double* x_low)
    double fl_residual(double c, double a, double b)
    double fl_two_product(double a, double b, double* err)
    float fl_fmaf(float a, float b, float c)
    double fl_exp_split(double x, double* rel)
    double fl_exp_split_low(double x, double x_low, double* rel)


cdef inline double two_sum(double a, double b, double* error) noexcept nogil:
    """a + b = s + error exactly (Knuth's branch-free TwoSum)."""
    cdef double total = a + b
    cdef double b_part = total - a
    error[0] = (a - (total - b_part)) + (b - b_part)
    return total


cdef inline double positive_part(double z) noexcept nogil:
    """max(z, 0) that keeps NaN (C's fmax would drop it)."""
    return 0.0 if z <= 0.0 else z


cdef inline double xmul(double a, double b) noexcept nogil:
    """a * b, except that 0 * inf is 0: a term with a zero coefficient vanishes.

    NaN still propagates: 0 * NaN is NaN.
    """
    if a == 0.0 and fabs(b) == INFINITY:
        return 0.0
    return a * b


cdef inline double softplus(double x) noexcept nogil:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact for every x."""
    return positive_part(x) + fl_log1p(fl_exp(-fabs(x)))


cdef inline float positive_part_float(float z) noexcept nogil:
    return <float>0.0 if z <= 0.0 else z


cdef inline float xmul_float(float a, float b) noexcept nogil:
    """xmul in float: 0 * inf is 0, 0 * NaN is NaN (a select, so loops vectorise)."""
    return <float>0.0 if a == 0.0 and fabsf(b) == INFINITY else a * b


cdef inline bint float_coefficient(double a) noexcept nogil:
    """a is 0 or within [1e-30, 1e30] in magnitude: rounding it to float loses nothing
    that a float32 result keeps (no overflow, no subnormal)."""
    return a == 0.0 or 1e-30 <= fabs(a) <= 1e30
