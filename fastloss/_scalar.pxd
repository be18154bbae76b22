# The stable scalar maths, written once and shared by every kernel.
#
# Each function is a tiny inline `nogil` helper so that the C compiler can
# inline it into the vectorised loops.  The loss of one element and its first
# and second derivatives are returned together in a LossGrad struct; a loop
# that does not read a field lets the C compiler drop its computation.

from libc.math cimport fabs, fabsf, INFINITY

cdef extern from "_vecmath.h" nogil:
    # Branch-free exp/log/log1p that the compiler vectorises (about 1 ulp).
    double fl_exp(double x)
    double fl_exp_for_float(double x)     # ~1e-8 relative, for float32 results
    double fl_log(double x)
    double fl_log1p(double x)
    float fl_expf(float x)
    float fl_logf(float x)
    float fl_log1pf(float x)
    float fl_logf_core(float u, float c)
    float fl_expf_nonpositive(float a)
    float fl_log1pf_unit(float e, float inv_u)


cdef struct LossGrad:
    double loss
    double grad         # d loss / dp
    double hess         # d^2 loss / dp^2


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


# --- regression ----------------------------------------------------------

cdef inline LossGrad mse_loss_grad(double p, double t, double unused) noexcept nogil:
    cdef LossGrad out
    cdef double r = p - t            # exact for float32 inputs
    out.loss = r * r                 # r^2
    out.grad = 2.0 * r               # d r^2 / dp
    out.hess = 2.0                   # d^2 r^2 / dp^2
    return out


cdef inline LossGrad huber_loss_grad(double p, double t, double delta) noexcept nogil:
    # Selects, no branches, so that the loops vectorise.  NaN r (or delta)
    # fails every comparison: a NaN loss, and r (NaN) as grad and hess.
    cdef LossGrad out
    cdef double r = p - t
    cdef double a = fabs(r)
    # quadratic zone |r| <= delta (its curvature 1 also at |r| == delta), else linear
    out.loss = 0.5 * r * r if a <= delta else delta * (a - 0.5 * delta)
    out.grad = delta if r > delta else (-delta if r < -delta else r)
    out.hess = 1.0 if a <= delta else (0.0 if a > delta else r)
    return out


# --- binary classification -------------------------------------------------

cdef inline double softplus(double x) noexcept nogil:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact for every x."""
    return positive_part(x) + fl_log1p(fl_exp(-fabs(x)))


cdef inline LossGrad binary_cross_entropy_loss_grad(double x, double t, double pos_weight,
                                                    bint float32_result) noexcept nogil:
    # loss = pw t softplus(-x) + (1 - t) softplus(x)     [-log sigma(x) = softplus(-x)]
    # grad = (1 - t) sigma(x) - pw t sigma(-x)
    # hess = (pw t + 1 - t) sigma(x) sigma(-x) = (pw t + 1 - t) e / (1 + e)^2
    #                                            [sigma' = sigma(x) sigma(-x)]
    # One exp: e = exp(-|x|) in [0, 1], so nothing overflows for any x.
    # For a float32 result log1p(e) is taken in float (twice the SIMD width):
    # the loss adds nonnegative terms, so its ~1 ulp error is not amplified.
    # The gradient keeps e in double: (1 - t) sigma(x) - t sigma(-x) may cancel.
    # For a float32 result e itself comes from the float exp (at most 0.89 ulp
    # in the x86-64-v3 build, 1.19 in the baseline, tests/test_vecmath.py;
    # -|x| of a float32 x is exact in float).
    cdef LossGrad out
    cdef double e = fl_expf(<float>-fabs(x)) if float32_result else fl_exp(-fabs(x))
    cdef double log1p_e = fl_log1pf(<float>e) if float32_result else fl_log1p(e)
    cdef double inv = 1.0 / (1.0 + e)
    cdef double sigma_pos, sigma_neg           # sigma(x), sigma(-x)
    if x >= 0.0:
        sigma_pos = inv
        sigma_neg = e * inv
    else:
        sigma_pos = e * inv                    # NaN lands here
        sigma_neg = inv
    cdef double positive_weight = pos_weight * t
    cdef double negative_weight = 1.0 - t
    out.loss = (xmul(positive_weight, positive_part(-x) + log1p_e)
                + xmul(negative_weight, positive_part(x) + log1p_e))
    out.grad = negative_weight * sigma_pos - positive_weight * sigma_neg
    out.hess = (positive_weight + negative_weight) * (e * inv * inv)
    return out


cdef struct LossGradFloat:
    float loss
    float grad
    float hess          # d^2 loss / dp^2 (huber; unused by the others)
    float e             # exp(-|x|), from which a caller forms the Hessian in float64


cdef inline float positive_part_float(float z) noexcept nogil:
    return <float>0.0 if z <= 0.0 else z


cdef inline float xmul_float(float a, float b) noexcept nogil:
    """xmul in float: 0 * inf is 0, 0 * NaN is NaN (a select, so loops vectorise)."""
    return <float>0.0 if a == 0.0 and fabsf(b) == INFINITY else a * b


cdef inline LossGradFloat binary_cross_entropy_loss_grad_float(float x, float t,
                                                               float pos_weight) noexcept nogil:
    # The formulas of binary_cross_entropy_loss_grad, every step in float (8
    # SIMD lanes, no widening) for a float32 result, with one division:
    # inv = 1 / (1 + e) gives sigma(+-x), and also the correction term of
    # log1p(e) = log(u) + (e - (u - 1)) / u, u = fl(1 + e) in [1, 2] (no special
    # case of fl_log1pf can occur there; NaN reaches the correction term).
    # The loss adds nonnegative terms, each within ~1.5 ulp; the gradient is
    # (1 - t) sigma(x) - pw t sigma(-x), each term within ~2 ulp of its size.
    cdef LossGradFloat out
    cdef float e = fl_expf_nonpositive(-fabsf(x))
    cdef float inv = <float>1.0 / (<float>1.0 + e)
    cdef float log1p_e = fl_log1pf_unit(e, inv)
    cdef float e_inv = e * inv
    cdef float sigma_pos = inv if x >= 0.0 else e_inv     # sigma(x); NaN takes e_inv
    cdef float sigma_neg = e_inv if x >= 0.0 else inv     # sigma(-x)
    cdef float positive_weight = pos_weight * t
    cdef float negative_weight = <float>1.0 - t
    out.loss = (xmul_float(positive_weight, positive_part_float(-x) + log1p_e)
                + xmul_float(negative_weight, positive_part_float(x) + log1p_e))
    out.grad = negative_weight * sigma_pos - positive_weight * sigma_neg
    out.hess = 0
    out.e = e
    return out


cdef inline LossGradFloat huber_loss_grad_float(float p, float t, float delta) noexcept nogil:
    # huber_loss_grad in float for a float32 result: r = fl(p - t) rounds once
    # (it is exact in double), the rest are selects and one product.
    cdef LossGradFloat out
    cdef float r = p - t
    cdef float a = fabsf(r)
    out.loss = <float>0.5 * r * r if a <= delta else delta * (a - <float>0.5 * delta)
    out.grad = delta if r > delta else (-delta if r < -delta else r)
    out.hess = <float>1.0 if a <= delta else (<float>0.0 if a > delta else r)
    out.e = 0
    return out


cdef inline LossGradFloat hinge_loss_grad_float(float s, float t, float margin) noexcept nogil:
    # hinge_loss_grad in float (t in {-1, +1}: t s is exact)
    cdef LossGradFloat out
    cdef float z = margin - t * s
    out.loss = positive_part_float(z)
    out.grad = -t if z > 0.0 else (<float>0.0 if z <= 0.0 else z)
    out.hess = 0
    out.e = 0
    return out


cdef inline LossGradFloat squared_hinge_loss_grad_float(float s, float t,
                                                        float margin) noexcept nogil:
    # squared_hinge_loss_grad in float: -2 t z is exact given z
    cdef LossGradFloat out
    cdef float z = positive_part_float(margin - t * s)
    out.loss = z * z
    out.grad = <float>-2.0 * t * z
    out.hess = 0
    out.e = 0
    return out


cdef inline bint float_coefficient(double a) noexcept nogil:
    """a is 0 or within [1e-30, 1e30] in magnitude: rounding it to float loses nothing
    that a float32 result keeps (no overflow, no subnormal)."""
    return a == 0.0 or 1e-30 <= fabs(a) <= 1e30


cdef inline LossGrad hinge_loss_grad(double s, double t, double margin) noexcept nogil:
    # loss = max(0, margin - t s); subgradient 0 at the kink margin == t s
    cdef LossGrad out
    cdef double z = margin - t * s
    out.loss = positive_part(z)
    out.hess = 0.0                   # piecewise linear (hess=True is not offered for it)
    out.grad = -t if z > 0.0 else (0.0 if z <= 0.0 else z)   # a select; NaN z gives z
    return out


cdef inline LossGrad squared_hinge_loss_grad(double s, double t, double margin) noexcept nogil:
    # loss = max(0, margin - t s)^2; grad = -2 t max(0, margin - t s)
    cdef LossGrad out
    cdef double z = positive_part(margin - t * s)
    out.loss = z * z
    out.grad = -2.0 * t * z
    out.hess = 2.0 * t * t if z > 0.0 else 0.0   # not offered by the API (kink at the margin)
    return out
