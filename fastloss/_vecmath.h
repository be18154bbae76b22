/* Branch-free exp, log and log1p that a C compiler vectorises.
 *
 * libm's exp and log are opaque calls, so a loop that calls them runs one
 * element at a time (about 5 ns each).  These versions are straight-line
 * code: a range reduction, a polynomial, and a rescaling by a power of two
 * built from bits, with every special case (overflow, underflow, subnormals,
 * +-inf, NaN, negative arguments of log) resolved by selects instead of
 * branches.  gcc -O3 turns a loop calling them into SIMD code without
 * -ffast-math, so IEEE semantics hold: NaN in gives NaN out.
 *
 * Accuracy (measured by tests/test_vecmath.py against unrounded values over
 * the whole range, which holds each function to its measured bound): at most
 * 0.95 ulp in double and 1.19 ulp in float (the float exp of the baseline
 * build; the x86-64-v3 build, with FMA, stays below 0.9 ulp everywhere).
 *
 * Integer conversions use the "magic number" trick (adding 1.5 * 2^52 puts an
 * integer in the low mantissa bits) because x86-64 before AVX-512 has no
 * vector conversion between double and int64.
 */
#ifndef FASTLOSS_VECMATH_H
#define FASTLOSS_VECMATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <stddef.h>

#include "_cpu.h"

/* The elementary functions are always inlined: a loop calling them vectorises
 * only if they are, and gcc stops inlining into a function that has already
 * grown large (the multiclass kernels' chunk loops are). */
#if defined(__GNUC__)
#define FL_INLINE static inline __attribute__((always_inline))
#else
#define FL_INLINE static inline
#endif

static inline int64_t fl_bits64(double x) { int64_t i; memcpy(&i, &x, 8); return i; }
static inline double fl_from_bits64(int64_t i) { double x; memcpy(&x, &i, 8); return x; }
static inline int32_t fl_bits32(float x) { int32_t i; memcpy(&i, &x, 4); return i; }
static inline float fl_from_bits32(int32_t i) { float x; memcpy(&x, &i, 4); return x; }

/* ------------------------------------------------------------------ exp */

/* exp(x) = 2^n exp(r), n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2].
 * ln2 is split Cody-Waite style (fdlibm's constants): n * LN2_HI is exact for
 * |n| < 2^21, so r carries no cancellation error.  x is first clamped to
 * [-746, 710]: beyond those, exp is 0 or inf in double, and the clamped value
 * gives exactly that (NaN passes through).  Returns r and stores n, and in
 * *r_low the rounding of r's last step (r + *r_low = x - n ln2 to ~1e-23). */
FL_INLINE double fl_exp_reduce_split(double x, double *n, double *r_low)
{
    const double LOG2E = 1.4426950408889634;
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    const double SHIFTER = 6755399441055744.0;          /* 1.5 * 2^52 */
    double xc = x > 710.0 ? 710.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    *n = (xc * LOG2E + SHIFTER) - SHIFTER;              /* round(x / ln2) */
    double r_hi = xc - *n * LN2_HI;                     /* exact */
    double r = r_hi - *n * LN2_LO;
    /* r_hi - r is exact (Sterbenz) but where r_hi is within 4e-7 of 0, and
     * then errs by ~1e-23: the reduction's rounding, to ~2^-70 of exp */
    *r_low = (r_hi - r) - *n * LN2_LO;
    return r;
}

/* fl_exp_reduce_split without the rounding of r (|r_low| <= ulp(r) / 2) */
FL_INLINE double fl_exp_reduce(double x, double *n)
{
    double r_low;
    return fl_exp_reduce_split(x, n, &r_low);
}

/* p 2^n for n in [-1077, 1025], applied as two factors 2^n1 2^n2 with
 * n1 = round(n / 2), n2 = n - n1 in [-539, 513], each a normal double, so a
 * subnormal result is rounded once. */
FL_INLINE double fl_scale_by_pow2(double p, double n)
{
    const double SHIFTER = 6755399441055744.0;
    double n1 = (n * 0.5 + SHIFTER) - SHIFTER;
    double n2 = n - n1;
    int64_t i1 = fl_bits64(n1 + SHIFTER) - fl_bits64(SHIFTER);
    int64_t i2 = fl_bits64(n2 + SHIFTER) - fl_bits64(SHIFTER);
    double scale1 = fl_from_bits64((i1 + 1023) << 52);
    double scale2 = fl_from_bits64((i2 + 1023) << 52);
    return (p * scale1) * scale2;
}

/* (exp(r) - 1 - r) / r^2 by its Taylor polynomial, 1/2! + r/3! + ... + r^11/13!
 * in Horner's form: the shared core of fl_exp, fl_exp_split and the softcap. */
FL_INLINE double fl_exp_taylor_tail(double r)
{
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    return p * r + 0.5;
}

/* exp(r) is its Taylor polynomial of degree 13 (remainder |r|^14 / 14! <
 * 4e-18 relative). */
FL_INLINE double fl_exp(double x)
{
    double n;
    double r = fl_exp_reduce(x, &n);
    double p = fl_exp_taylor_tail(r);
    p = p * r + 1.0;
    p = p * r + 1.0;
    return fl_scale_by_pow2(p, n);
}

/* exp(x) = hi (1 + *rel) with |*rel| < 2^-52 carrying hi's rounding error but
 * the reduction's (to ~2^-55 relative; fl_exp_split_low carries that too),
 * from r and n of fl_exp_reduce: the Taylor tail
 * r^2 (1/2 + r/6 + ...) in double (it is below 0.07, so its own rounding is
 * tiny), and 1 + r + tail as an unevaluated sum (two fast TwoSums).  For a
 * product that must see exp(x) to more than double precision (the focal loss's
 * q^gamma, whose error is gamma times exp's).  A subnormal or zero hi keeps
 * its own (lesser) precision. */
FL_INLINE double fl_exp_split_reduced(double r, double n, double *rel)
{
    double p = fl_exp_taylor_tail(r);
    double tail = (r * r) * p;                          /* exp(r) - 1 - r */
    double s1 = r + tail;                               /* |r| >= tail for |r| <= ln2/2 */
    double e1 = (r - s1) + tail;
    double s2 = 1.0 + s1;                               /* |s1| < 1 */
    double e2 = (1.0 - s2) + s1;
    *rel = (e1 + e2) / s2;
    return fl_scale_by_pow2(s2, n);
}

FL_INLINE double fl_exp_split(double x, double *rel)
{
    double n;
    double r = fl_exp_reduce(x, &n);
    return fl_exp_split_reduced(r, n, rel);
}

/* exp(x + x_low) = hi (1 + *rel) (|x_low| <= ulp(x)) to about 2^-60 relative:
 * fl_exp_split with the rounding of the reduction (up to half an ulp of r, a
 * relative 2^-55 of exp) and x_low carried too, as exp(r + d) = exp(r) (1 + d)
 * to O(d^2).  For a sum of exps that must hold more than double precision
 * (the float64 focal loss's S, whose relative error q^gamma multiplies by
 * gamma).  A subnormal or zero hi keeps its own (lesser) precision. */
FL_INLINE double fl_exp_split_low(double x, double x_low, double *rel)
{
    double n, r_low;
    double r = fl_exp_reduce_split(x, &n, &r_low);
    double hi = fl_exp_split_reduced(r, n, rel);
    *rel = *rel + (r_low + x_low);
    return hi;
}

/* exp(x) to about 1e-8 relative: enough for a result rounded to float, but
 * with the range reduction in double, so that x itself (say the difference
 * of two float logits, exact in double) loses nothing.  Taylor degree 7:
 * remainder |r|^8 / 8! < 5.3e-9 relative, a tenth of a float ulp. */
FL_INLINE double fl_exp_for_float(double x)
{
    double n;
    double r = fl_exp_reduce(x, &n);
    double p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return fl_scale_by_pow2(p, n);
}

/* fl_exp_for_float for a <= 0 (or NaN) whose result only matters to a float32
 * value: a is clamped below at -104 (exp(-104) is below half of float's
 * smallest subnormal, so no float32 result tells the two apart), and 2^n,
 * n in [-151, 0], is one normal double built from bits. */
FL_INLINE double fl_exp_nonpositive_for_float(double a)
{
    const double LOG2E = 1.4426950408889634;
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    const double SHIFTER = 6755399441055744.0;          /* 1.5 * 2^52 */
    double ac = a < -104.0 ? -104.0 : a;                /* NaN passes */
    double n = (ac * LOG2E + SHIFTER) - SHIFTER;
    double r = (ac - n * LN2_HI) - n * LN2_LO;
    double p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t i = fl_bits64(n + SHIFTER) - fl_bits64(SHIFTER);
    return p * fl_from_bits64((i + 1023) << 52);
}

/* The same in float: Cephes' split of ln2, Taylor degree 7 (remainder
 * |r|^8 / 8! < 6e-9 relative), clamp to [-104, 89]. */
FL_INLINE float fl_expf(float x)
{
    const float LOG2E = 1.44269504088896341f;
    const float LN2_HI = 0.693359375f;
    const float LN2_LO = -2.12194440e-4f;
    const float SHIFTER = 12582912.0f;                  /* 1.5 * 2^23 */
    float xc = x > 89.0f ? 89.0f : x;
    xc = xc < -104.0f ? -104.0f : xc;
    float n = (xc * LOG2E + SHIFTER) - SHIFTER;
    float r = (xc - n * LN2_HI) - n * LN2_LO;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* n in [-150, 129]: two factors, each a normal float. */
    float n1 = (n * 0.5f + SHIFTER) - SHIFTER;
    float n2 = n - n1;
    int32_t i1 = fl_bits32(n1 + SHIFTER) - fl_bits32(SHIFTER);
    int32_t i2 = fl_bits32(n2 + SHIFTER) - fl_bits32(SHIFTER);
    float scale1 = fl_from_bits32((i1 + 127) << 23);
    float scale2 = fl_from_bits32((i2 + 127) << 23);
    return (p * scale1) * scale2;
}

/* fl_expf for a <= 0 (or NaN), the argument -|x| of the binary losses: the
 * same reduction and polynomial, clamped below only, and 2^n (n in [-150, 0])
 * applied as 2^(n + 64) 2^-64: the first product is a normal float, exact,
 * and the second rounds once where the result is subnormal.  The same bits
 * as fl_expf, with fewer operations. */
FL_INLINE float fl_expf_nonpositive(float a)
{
    const float LOG2E = 1.44269504088896341f;
    const float LN2_HI = 0.693359375f;
    const float LN2_LO = -2.12194440e-4f;
    const float SHIFTER = 12582912.0f;                  /* 1.5 * 2^23 */
    float ac = a < -104.0f ? -104.0f : a;               /* NaN passes */
    float n = (ac * LOG2E + SHIFTER) - SHIFTER;
    float r = (ac - n * LN2_HI) - n * LN2_LO;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t i = fl_bits32(n + SHIFTER) - fl_bits32(SHIFTER);
    float scale = fl_from_bits32((i + 127 + 64) << 23);
    return (p * scale) * 0x1p-64f;
}

/* ------------------------------------------------------------------ softcap */

/* Logit soft-capping (Gemma 2): capped = cap tanh(x / cap) and its slope
 * d capped / d x = 1 - tanh^2(x / cap) = sech^2(x / cap), both to a few ulps
 * and without cancellation anywhere.  With a = 2 |x| / cap and q = exp(-a)
 * in (0, 1]:
 *
 *   tanh(|x| / cap) = (1 - q) / (1 + q) = -expm1(-a) / (1 + q)
 *   sech^2(x / cap) = 4 q / (1 + q)^2
 *
 * (1 - tanh^2 formed from tanh would cancel where the logit saturates, and
 * 1 - q where it is small.)  One range reduction serves both:
 * -a = n ln2 + r with |r| <= ln2 / 2 (fl_exp_reduce), expm1(r) = r P(r) with
 * P the Taylor polynomial of expm1(r) / r to degree 12 (remainder |r|^13 / 14!
 * relative, below 2^-56), q = 2^n (1 + expm1(r)); expm1(-a) is r P(r) itself
 * when n = 0 and q - 1 otherwise (there q <= 0.71: no cancellation).
 * x = +-inf gives +-cap and slope 0; NaN gives NaN.  fl_softcap_of takes
 * a = 2 |x| / cap as computed by its caller, and a correction a_low of a
 * (exp(-a) is applied as exp(-a) (1 - a_low)). */
FL_INLINE void fl_softcap_of(double a, double a_low, double x, double cap,
                                 double *capped, double *slope)
{
    double n;
    double r = fl_exp_reduce(-a, &n);
    double p = fl_exp_taylor_tail(r);
    p = p * r + 1.0;
    double expm1_r = r * p;
    double q = fl_scale_by_pow2(1.0 + expm1_r, n);
    double expm1_a = n == 0.0 ? expm1_r : q - 1.0;
    /* exp(-(a + a_low)) = q (1 - a_low) to O(a_low^2) */
    expm1_a -= q * a_low;
    q -= q * a_low;
    double d = 1.0 / (1.0 + q);
    *capped = copysign(cap * (-expm1_a * d), x);
    *slope = 4.0 * q * d * d;
}

/* a b - fl(a b), exactly (the rounding error of a product): one fused
 * multiply-add, or Dekker's product with Veltkamp's split at 2^27 + 1. */
FL_INLINE double fl_product_error(double a, double b, double product)
{
#if defined(__FMA__)
    return fma(a, b, -product);
#else
    double a_big = 134217729.0 * a, a_hi = a_big - (a_big - a), a_lo = a - a_hi;
    double b_big = 134217729.0 * b, b_hi = b_big - (b_big - b), b_lo = b - b_hi;
    return ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo;
#endif
}

/* c - a b, exactly when it is representable (c close to a b): one fused
 * multiply-add, or c - fl(a b) (exact, Sterbenz) less Dekker's error of the
 * product.  (Not written c - a * b: the compiler contracts that into a fused
 * multiply-add in some builds only.) */
FL_INLINE double fl_residual(double c, double a, double b)
{
#if defined(__FMA__)
    return fma(-a, b, c);
#else
    double product = a * b;
    return (c - product) - fl_product_error(a, b, product);
#endif
}

/* fl_softcap_of's maths to about one ulp, for the careful path (the float64
 * rows): x' = cap (-expm1(-a)) / (1 + q) with
 *
 * - a = 2 |x| / cap and its rounding error a_low (y - a cap is exact), applied
 *   as exp(-(a + a_low)) = q (1 - a_low): a's rounding (a relative 2^-53)
 *   would otherwise cost |a| / 2 ulps of q, hence of the slope, several
 *   hundred where a logit saturates;
 * - expm1(r) = r + r (r Q(r)) (Q the Taylor polynomial of (expm1(r) - r) / r^2
 *   to r^11 / 13!): the small correction to r carries the polynomial's
 *   roundings; 1 + expm1(r), hence q, and q - 1 are kept as two doubles;
 * - the product cap (-expm1(-a)) and the sum 1 + q held exactly as two doubles
 *   each, and their quotient rounded with one correction step.
 *
 * About 1 ulp at worst instead of about 4 for fl_softcap_of's direct
 * formulas (x / cap, then exp, a division and two products). */
FL_INLINE void fl_softcap(double x, double cap, double *capped, double *slope)
{
    double y = 2.0 * fabs(x);
    double a = y / cap;
    double a_low = fl_residual(y, a, cap) / cap;
    a_low = a_low == a_low ? a_low : 0.0;         /* x = +-inf: nothing to correct */
    double n;
    double r = fl_exp_reduce(-a, &n);
    double p = fl_exp_taylor_tail(r);
    double expm1_r = r + r * (r * p);
    double one_plus = 1.0 + expm1_r, one_plus_low = (1.0 - one_plus) + expm1_r;
    double q = fl_scale_by_pow2(one_plus, n), q_low = fl_scale_by_pow2(one_plus_low, n);
    /* expm1(-a) = em + em_low: expm1(r) itself when n = 0, else q - 1 (Knuth's TwoSum) */
    double em = q - 1.0, em_back = em - q;
    double em_low = ((q - (em - em_back)) + (-1.0 - em_back)) + q_low;
    em = n == 0.0 ? expm1_r : em;
    em_low = n == 0.0 ? 0.0 : em_low;
    q_low = n == 0.0 ? one_plus_low : q_low;
    em_low -= q * a_low;
    q_low -= q * a_low;
    double num = cap * -em, num_low = fl_product_error(cap, -em, num) - cap * em_low;
    double den = 1.0 + q, den_low = ((1.0 - den) + q) + q_low;      /* 1 >= q */
    q += q_low;
    double t0 = num / den;
    double t_low = (fl_residual(num, t0, den) + (num_low - t0 * den_low)) / den;
    double d = 1.0 / den;
    *capped = copysign(t0 + (t_low == t_low ? t_low : 0.0), x);
    *slope = 4.0 * q * d * d;
}

/* ------------------------------------------------------------------ log */

/* log(u) + c for u > 0 finite (c a small correction term, 0 for plain log);
 * fl_log_core_split returns it as hi - x: hi = k LN2_HI is exact (LN2_HI has
 * 32 significant bits, k at most 11) and x, of magnitude below 0.35 + |k| 2e-10,
 * carries the rest to about 1e-17 absolute, for a log that a product must see
 * to more than double precision (the focal loss's q^gamma = exp(gamma log q)).
 * u = 2^k m with m in [sqrt(1/2), sqrt(2)); f = m - 1, s = f / (2 + f), and
 * log(1 + f) = 2 atanh(s) = f - s (f - R(s)) with fdlibm's minimax R
 * (e_log.c: |error| < 2^-58.45).  Subnormal u is first scaled by 2^54.
 * fl_log_core_split_low also gives x's last rounding in *x_low (log(u) + c =
 * hi - x - *x_low to about 2^-57 |x|): for q^gamma to a small fraction of an
 * ulp whatever gamma (the float64 softmax focal loss). */
FL_INLINE double fl_log_core_split_low(double u, double c, double *hi, double *x_low)
{
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    const double SQRT2 = 1.4142135623730951;
    const double EXP_SHIFTER = 4503599627370496.0;      /* 2^52 */
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                 Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                 Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    /* Selects each test one comparison: combined boolean flags of mixed
     * widths stop gcc's vectoriser. */
    double us = u < 2.2250738585072014e-308 ? u * 18014398509481984.0 : u; /* 2^54 */
    double k_subnormal = u < 2.2250738585072014e-308 ? 54.0 : 0.0;
    int64_t bits = fl_bits64(us);
    /* biased exponent as a double, without an int64 -> double conversion */
    double k = fl_from_bits64(((bits >> 52) & 0x7ff) | fl_bits64(EXP_SHIFTER)) - EXP_SHIFTER;
    double m = fl_from_bits64((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    double k_big = m > SQRT2 ? 1.0 : 0.0;
    m = m > SQRT2 ? m * 0.5 : m;
    k = k - 1023.0 + k_big - k_subnormal;
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double w = z * z;
    double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
    double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
    double R = t2 + t1;
    double hfsq = 0.5 * f * f;
    *hi = k * LN2_HI;
    double a = hfsq - (s * (hfsq + R) + (k * LN2_LO + c));
    double x = a - f;
    /* the rounding of x = a - f (TwoSum; f = m - 1 is exact): what remains
     * is a's, below 2^-57 of |a| <= f^2 / 2 + ... */
    double f_part = x - a;
    *x_low = (a - (x - f_part)) + (-f - f_part);
    return x;
}

FL_INLINE double fl_log_core_split(double u, double c, double *hi)
{
    double x_low;
    return fl_log_core_split_low(u, c, hi, &x_low);
}

FL_INLINE double fl_log_core(double u, double c)
{
    double hi;
    double x = fl_log_core_split(u, c, &hi);
    return hi - x;
}

/* log(x): -inf at 0, NaN below 0 and at NaN, +inf at +inf. */
FL_INLINE double fl_log(double x)
{
    double ok = x > 0.0 ? x : 1.0;
    ok = ok < 1.0 / 0.0 ? ok : 1.0;
    double y = fl_log_core(ok, 0.0);
    y = x == 0.0 ? -1.0 / 0.0 : y;
    y = x == 1.0 / 0.0 ? x : y;
    return x != x ? x : (x < 0.0 ? NAN : y);
}

/* log1p(x) = log(u) + (x - (u - 1)) / u with u = fl(1 + x): the second term
 * restores what rounding 1 + x lost (Goldberg's correction), so tiny x gives
 * x itself.  -inf at -1, NaN below -1 and at NaN, +inf at +inf. */
FL_INLINE double fl_log1p(double x)
{
    double u = 1.0 + x;
    double us = u > 0.0 ? u : 1.0;
    us = us < 1.0 / 0.0 ? us : 1.0;
    /* where u is irregular (0, < 0, inf, NaN) the selects below replace y */
    double c = (x - (us - 1.0)) / us;
    double y = fl_log_core(us, c);
    y = u == 0.0 ? -1.0 / 0.0 : y;
    y = x == 1.0 / 0.0 ? x : y;
    y = x == 0.0 ? x : y;                               /* log1p(-0) = -0 */
    return x != x ? x : (x < -1.0 ? NAN : y);
}

/* float: the same reduction, Cephes' logf polynomial for log(1 + f) on
 * [sqrt(1/2) - 1, sqrt(2) - 1] (relative error ~ 2^-24). */
FL_INLINE float fl_logf_core(float u, float c)
{
    const float LN2_HI = 0.693359375f;
    const float LN2_LO = -2.12194440e-4f;
    const float SQRT2 = 1.41421356f;
    float us = u < 1.17549435e-38f ? u * 16777216.0f : u;   /* 2^24 */
    float k_subnormal = u < 1.17549435e-38f ? 24.0f : 0.0f;
    int32_t bits = fl_bits32(us);
    float k = fl_from_bits32(((bits >> 23) & 0xff) | 0x4b000000) - 8388608.0f;  /* 2^23 */
    float m = fl_from_bits32((bits & 0x007fffff) | 0x3f800000);
    float k_big = m > SQRT2 ? 1.0f : 0.0f;
    m = m > SQRT2 ? m * 0.5f : m;
    k = k - 127.0f + k_big - k_subnormal;
    float f = m - 1.0f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = f * z * p;
    y = y + (k * LN2_LO + c);
    y = y - 0.5f * z;
    return (f + y) + k * LN2_HI;
}

/* log1p(e) for e in [0, 1] (or NaN) given inv_u = 1 / fl(1 + e): fl_log1pf's
 * formula with u = fl(1 + e) in [1, 2], where the exponent is 0 or 1 and no
 * special case can occur; the correction (e - (u - 1)) / u uses inv_u (it
 * only restores the rounding of 1 + e).  NaN reaches the correction term. */
FL_INLINE float fl_log1pf_unit(float e, float inv_u)
{
    const float LN2_HI = 0.693359375f;
    const float LN2_LO = -2.12194440e-4f;
    const float SQRT2 = 1.41421356f;
    float u = 1.0f + e;
    float c = (e - (u - 1.0f)) * inv_u;
    float k = u > SQRT2 ? 1.0f : 0.0f;
    float m = u > SQRT2 ? u * 0.5f : u;
    float f = m - 1.0f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = f * z * p;
    y = y + (k * LN2_LO + c);
    y = y - 0.5f * z;
    return (f + y) + k * LN2_HI;
}

FL_INLINE float fl_logf(float x)
{
    const float INF = 1.0f / 0.0f;
    float ok = x > 0.0f ? x : 1.0f;
    ok = ok < INF ? ok : 1.0f;
    float y = fl_logf_core(ok, 0.0f);
    y = x == 0.0f ? -INF : y;
    y = x == INF ? x : y;
    return x != x ? x : (x < 0.0f ? NAN : y);
}

FL_INLINE float fl_log1pf(float x)
{
    const float INF = 1.0f / 0.0f;
    float u = 1.0f + x;
    float us = u > 0.0f ? u : 1.0f;
    us = us < INF ? us : 1.0f;
    float c = (x - (us - 1.0f)) / us;
    float y = fl_logf_core(us, c);
    y = u == 0.0f ? -INF : y;
    y = x == INF ? x : y;
    y = x == 0.0f ? x : y;
    return x != x ? x : (x < -1.0f ? NAN : y);
}

/* a b + c with one rounding where the machine has FMA, else two: written out so
 * that the compiler cannot contract it in one loop and not in another (a loss
 * and its gradient then differ by an ulp between the kernels' variants). */
FL_INLINE float fl_fmaf(float a, float b, float c)
{
#if defined(__FMA__)
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

/* a * b = p + *err exactly (p = fl(a b)): fused multiply-adds where the build
 * has FMA, else Veltkamp's split of both factors into 26-bit halves (Dekker
 * 1971); |a|, |b| below 1e300 (the split's product must not overflow).  Without
 * hardware FMA the compiler cannot contract the split's operations. */
FL_INLINE double fl_two_product(double a, double b, double *err)
{
#ifdef __FMA__
    /* p as an FMA (the same value as a * b), not a product: gcc contracts a
     * product p with a later p + c into fma(a, b, c), across inlined
     * functions, which would leave *err the error of another sum. */
    double p = __builtin_fma(a, b, 0.0);
    *err = __builtin_fma(a, b, -p);
#else
    double p = a * b;
    const double SPLIT = 134217729.0;                   /* 2^27 + 1 */
    double ca = SPLIT * a, cb = SPLIT * b;
    double a_hi = ca - (ca - a), b_hi = cb - (cb - b);
    double a_lo = a - a_hi, b_lo = b - b_hi;
    *err = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo;
#endif
    return p;
}

/* ------------------------------------------------------------------ row maximum */

/* The maximum of a row, written with GCC's generic vectors (SSE2 on the
 * baseline build, AVX on x86-64-v3).  gcc does not vectorise a max-reduction
 * loop over floats without -ffinite-math-only and -fno-signed-zeros, since
 * its SIMD max differs from "x > best ? x : best" at NaN and -0; here the
 * select is spelled out with a comparison mask, which keeps the scalar
 * rule exactly.  Every accumulator starts at x[0], so a leading NaN stays
 * the result and a later NaN is skipped; which zero wins a tie of -0 and +0
 * does not matter to the callers, who read the value back at its first
 * position.  The maximum of a set is the same in any order, so the number
 * of accumulators is free. */
#if defined(__GNUC__)
typedef float fl_v8f __attribute__((vector_size(32)));
typedef int32_t fl_v8i __attribute__((vector_size(32)));
typedef double fl_v4d __attribute__((vector_size(32)));
typedef int64_t fl_v4i __attribute__((vector_size(32)));

/* max(best, v) lane by lane as "v > best ? v : best", a mask select
 * (IT: the integer vector of the same width). */
#define FL_VECTOR_MAX(IT, best, v) \
    ((__typeof__(best))(((IT)(v) & ((v) > (best))) | ((IT)(best) & ~((v) > (best)))))

/* The vector part of a row maximum: advances c over whole groups of four
 * vectors, one accumulator each, and folds them into best. */
#define FL_ROW_MAX_VECTORS(VT, IT, LANES)                                   \
    if (n >= 4 * (LANES)) {                                                 \
        VT acc[4], v;                                                       \
        for (int a = 0; a < 4; a++)                                         \
            acc[a] = (VT){0} + x[0];                                        \
        for (; c + 4 * (LANES) <= n; c += 4 * (LANES))                      \
            for (int a = 0; a < 4; a++) {                                   \
                memcpy(&v, x + c + a * (LANES), sizeof v);                  \
                acc[a] = FL_VECTOR_MAX(IT, acc[a], v);                      \
            }                                                               \
        for (int a = 1; a < 4; a++)                                         \
            acc[0] = FL_VECTOR_MAX(IT, acc[0], acc[a]);                     \
        for (int l = 0; l < (LANES); l++)                                   \
            best = acc[0][l] > best ? acc[0][l] : best;                     \
    }

/* The vector part of a search: advances c to the first vector holding value. */
#define FL_FIND_VECTORS(VT, IT, LANES)                                      \
    {                                                                       \
        VT target = (VT){0} + value, v;                                     \
        for (; c + (LANES) <= n; c += (LANES)) {                            \
            memcpy(&v, x + c, sizeof v);                                    \
            IT eq = v == target;                                            \
            int any = 0;                                                    \
            for (int l = 0; l < (LANES); l++)                               \
                any |= eq[l] != 0;                                          \
            if (any)                                                        \
                break;                                                      \
        }                                                                   \
    }
#else
#define FL_ROW_MAX_VECTORS(VT, IT, LANES)
#define FL_FIND_VECTORS(VT, IT, LANES)
#endif

/* fl_row_max_T(x, n): the maximum of x[0:n] by the rule above;
 * fl_first_equal_T(x, n, value): the first position of value in x[0:n]
 * (n when it is absent, as for NaN). */
#define FL_DEFINE_ROW_SEARCH(T, VT, IT, LANES)                              \
static inline T fl_row_max_##T(const T *x, ptrdiff_t n)                     \
{                                                                           \
    T best = x[0];                                                          \
    ptrdiff_t c = 0;                                                        \
    FL_ROW_MAX_VECTORS(VT, IT, LANES)                                       \
    for (; c < n; c++)                                                      \
        best = x[c] > best ? x[c] : best;                                   \
    return best;                                                            \
}                                                                           \
                                                                            \
static inline ptrdiff_t fl_first_equal_##T(const T *x, ptrdiff_t n, T value) \
{                                                                           \
    ptrdiff_t c = 0;                                                        \
    FL_FIND_VECTORS(VT, IT, LANES)                                          \
    while (c < n && x[c] != value)                                          \
        c++;                                                                \
    return c;                                                               \
}

FL_DEFINE_ROW_SEARCH(float, fl_v8f, fl_v8i, 8)
FL_DEFINE_ROW_SEARCH(double, fl_v4d, fl_v4i, 4)


/* ------------------------------------------------------------------ fast float32 softmax rows */

/* The exp pass of an ordinary float32 row, at a few instructions per element.
 *
 * A row is "ordinary" when it holds no NaN and its maximum m and minimum
 * satisfy |m| < 2^20 and min >= m - 85: then every exp(x_c - m) is a normal
 * float in [e^-85, 1] and the special cases of fl_expf (clamps, subnormal
 * results, NaN) cannot occur, so they are decided once for the row instead of
 * once per element.  Other rows take the careful path of _rows.pxd.
 *
 * Shift around K ln2 instead of m (K = rint(m log2 e)): per element,
 *
 *   exp(x - K ln2) = 2^(n - K) exp(r),   n = rint(x log2 e),  r = x - n ln2,
 *
 * with ln2 = LN2_HI + LN2_LO (LN2_HI = fl(ln2)).  x - n LN2_HI is exact as one
 * fused multiply-add (both are multiples of 2^-25 and the result is below
 * 1/2 in magnitude), so r errs only by the rounding of the second step
 * (2^-26 absolute) and x - m is never formed: no TwoSum is needed.  The
 * factor 2^(n - K) is one integer add to the exponent field: adding
 * 1.5 * 2^23 - K (exact) to x log2 e puts n - K in the low mantissa bits of
 * t, and t's bits shifted left by 23 are (n - K) << 23 modulo 2^32.  The
 * common factor exp(K ln2 - m) of the row is returned apart (in double), so
 * that the caller folds it into its own per-row coefficients.
 *
 * exp(r) on |r| <= 0.37 (|n ln2 - x| <= ln2 / 2 plus the rounding of log2 e
 * for |x| < 2^20) is a polynomial of degree 6 (FL_EXP_POLY6): the minimax
 * one for the relative error (Remez; 2.9e-9, a twentieth of a float ulp)
 * with its coefficients rounded to float; evaluated in float by Horner's rule
 * it errs by at most 0.73 float ulp (2^-23 relative) on the interval, against
 * 0.59 for the Taylor polynomial of degree 7 (FL_EXP_POLY) at one FMA more.
 *
 * This needs FMA (the exact first step of the reduction): it is compiled in
 * the x86-64-v3 build; in the baseline build fl_row_ordinary_float answers 0
 * and every row takes the careful path. */
/* Some lane functions below are written once for 8 float lanes (W = 256,
 * __m256) and 16 (W = 512, __m512, for the functions built for AVX-512 and
 * called only where the CPU has it): FL_W(W, op) is _mm256_op or _mm512_op.
 * FL_TARGET_V3 marks the 8-lane ones (the module's own target) and
 * FL_TARGET_AVX512 the 16-lane ones. */
#define FL_W(W, op) _mm##W##_##op
#define FL_AS_INT(W, v) _mm##W##_castps_si##W(v)
#define FL_AS_FLOAT(W, v) _mm##W##_castsi##W##_ps(v)
#define FL_TARGET_V3
#define FL_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
/* Comparisons and selections of either width (a comparison gives a vector of
 * lane masks in 256 bits, a mask register in 512): FL_MASK_PS(W) and
 * FL_MASK_PD(W) are their types; FL_KEEP_PD(W, m, v) is v where m, +0
 * elsewhere; FL_PICK_PS(W, m, a, b) is b where m, a elsewhere;
 * FL_SIGN_PS(W, x) is the mask of the lanes whose sign bit is set. */
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FL_CAT_(a, b) a##b
#define FL_MASK_PS(W) FL_CAT(FL_MASK_PS_, W)
#define FL_MASK_PD(W) FL_CAT(FL_MASK_PD_, W)
#define FL_CMP_PS(W) FL_CAT(FL_CMP_PS_, W)
#define FL_CMP_PD(W) FL_CAT(FL_CMP_PD_, W)
#define FL_KEEP_PD(W) FL_CAT(FL_KEEP_PD_, W)
#define FL_PICK_PS(W) FL_CAT(FL_PICK_PS_, W)
#define FL_SIGN_PS(W) FL_CAT(FL_SIGN_PS_, W)
#define FL_MASK_PS_256 __m256
#define FL_MASK_PD_256 __m256d
#define FL_CMP_PS_256(a, b, p) _mm256_cmp_ps(a, b, p)
#define FL_CMP_PD_256(a, b, p) _mm256_cmp_pd(a, b, p)
#define FL_KEEP_PD_256(m, v) _mm256_and_pd(m, v)
#define FL_PICK_PS_256(m, a, b) _mm256_blendv_ps(a, b, m)
#define FL_SIGN_PS_256(x) (x)
#define FL_MASK_PS_512 __mmask16
#define FL_MASK_PD_512 __mmask8
#define FL_CMP_PS_512(a, b, p) _mm512_cmp_ps_mask(a, b, p)
#define FL_CMP_PD_512(a, b, p) _mm512_cmp_pd_mask(a, b, p)
#define FL_KEEP_PD_512(m, v) _mm512_maskz_mov_pd(m, v)
#define FL_PICK_PS_512(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define FL_SIGN_PS_512(x) _mm512_movepi32_mask(_mm512_castps_si512(x))

/* Whether the functions that have them take their 16-lane AVX-512 twins: set
 * by fl_set_wide_lanes (each module that includes this file has its own). */
static int fl_wide_lanes = 0;

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FL_HAVE_FAST_ROWS 1
#if defined(__GNUC__) || defined(__clang__)
#define FL_HAVE_WIDE_LANES 1        /* the 16-lane twins, for CPUs with AVX-512 */
#endif

#define FL_LOG2E_F 1.44269502162933350f
#define FL_LN2_HI_F 0.693147182464599609f                  /* fl(ln 2) */
#define FL_LN2_LO_F -1.90465421212593360e-09f              /* fl(ln 2 - LN2_HI) */
#define FL_ROW_SPREAD 85.0f
#ifdef _OPENMP
#define FL_PRAGMA_SIMD _Pragma("omp simd")
#else
#define FL_PRAGMA_SIMD
#endif

/* The Taylor polynomial of degree 7 of exp (the soft-capped rows below). */
#define FL_EXP_POLY(FMA, SET1, p, r)                                        \
    p = SET1(1.0f / 5040.0f);                                               \
    p = FMA(p, r, SET1(1.0f / 720.0f));                                     \
    p = FMA(p, r, SET1(1.0f / 120.0f));                                     \
    p = FMA(p, r, SET1(1.0f / 24.0f));                                      \
    p = FMA(p, r, SET1(1.0f / 6.0f));                                       \
    p = FMA(p, r, SET1(0.5f));                                              \
    p = FMA(p, r, SET1(1.0f));                                              \
    p = FMA(p, r, SET1(1.0f));

/* The minimax polynomial of degree 6 for exp on [-0.37, 0.37] (see above). */
#define FL_EXP_POLY6(FMA, SET1, p, r)                                       \
    p = SET1(1.38295872602611780e-3f);                                      \
    p = FMA(p, r, SET1(8.38057789951562881e-3f));                           \
    p = FMA(p, r, SET1(4.16686907410621643e-2f));                           \
    p = FMA(p, r, SET1(1.66663467884063721e-1f));                           \
    p = FMA(p, r, SET1(4.99999880790710449e-1f));                           \
    p = FMA(p, r, SET1(1.0f));                                              \
    p = FMA(p, r, SET1(1.0f));
#define FL_SCALAR_F(v) (v)

static inline __m256 fl_exp_around_v8(__m256 x, __m256 shifter)
{
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(FL_LOG2E_F), shifter);
    __m256 n = _mm256_sub_ps(t, shifter);                          /* n - K + K: exact */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(FL_LN2_HI_F), x);   /* exact */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(FL_LN2_LO_F), r);
    __m256 p;
    FL_EXP_POLY6(_mm256_fmadd_ps, _mm256_set1_ps, p, r)
    __m256i scale = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), scale));
}

/* The same for one element (the row's tail), the same operations rounded alike. */
static inline float fl_exp_around_1(float x, float shifter)
{
    float t = fmaf(x, FL_LOG2E_F, shifter);
    float n = t - shifter;
    float r = fmaf(-n, FL_LN2_HI_F, x);
    r = fmaf(-n, FL_LN2_LO_F, r);
    float p;
    FL_EXP_POLY6(fmaf, FL_SCALAR_F, p, r)
    return fl_from_bits32((int32_t)((uint32_t)fl_bits32(p) + ((uint32_t)fl_bits32(t) << 23)));
}
#endif

/* 1 when the fast row passes below are compiled in (x86-64-v3 build), else 0. */
static inline int fl_fast_rows_built(void)
{
#ifdef FL_HAVE_FAST_ROWS
    return 1;
#else
    return 0;
#endif
}

#ifdef FL_HAVE_FAST_ROWS
/* The vector part of fl_row_max_min_T: advances c over pairs of VT vectors
 * (SFX: the intrinsics' suffix, ps or pd; LANES lanes each), two max and two
 * min accumulators, and folds them into hi and lo.  vmaxp?/vminp? return
 * their second operand when either is NaN; NaN is tracked apart (unordered
 * self-comparison), so the order does not matter. */
#define FL_ROW_MAX_MIN_VECTORS(T, VT, SFX, LANES)                           \
    VT hi0 = _mm256_set1_##SFX(x[0]), hi1 = hi0, lo0 = hi0, lo1 = hi0;      \
    VT nan = _mm256_setzero_##SFX();                                        \
    for (; c + 2 * (LANES) <= n; c += 2 * (LANES)) {                        \
        VT a = _mm256_loadu_##SFX(x + c), b = _mm256_loadu_##SFX(x + c + (LANES)); \
        hi0 = _mm256_max_##SFX(hi0, a);                                     \
        hi1 = _mm256_max_##SFX(hi1, b);                                     \
        lo0 = _mm256_min_##SFX(lo0, a);                                     \
        lo1 = _mm256_min_##SFX(lo1, b);                                     \
        nan = _mm256_or_##SFX(nan, _mm256_cmp_##SFX(a, b, _CMP_UNORD_Q));   \
    }                                                                       \
    T hi_l[LANES], lo_l[LANES];                                             \
    _mm256_storeu_##SFX(hi_l, _mm256_max_##SFX(hi0, hi1));                  \
    _mm256_storeu_##SFX(lo_l, _mm256_min_##SFX(lo0, lo1));                  \
    any_nan |= _mm256_movemask_##SFX(nan) != 0;                             \
    for (int l = 0; l < (LANES); l++) {                                     \
        hi = hi_l[l] > hi ? hi_l[l] : hi;                                   \
        lo = lo_l[l] < lo ? lo_l[l] : lo;                                   \
    }
#else
#define FL_ROW_MAX_MIN_VECTORS(T, VT, SFX, LANES)
#endif

/* fl_row_max_min_T(x, n, row_max, row_min): the maximum and minimum of
 * x[0:n] (n >= 1); returns 0 when x holds a NaN.
 * fl_row_ordinary_T(x, n, row_max): is x[0:n] (n >= 1) an ordinary row
 * (|max| < LIMIT, min >= max - SPREAD, no NaN; see above and, for float64,
 * below)?  Writes its maximum; the baseline build answers 0.
 * FL_ROW_MAX_MIN_VECTORS's statements are spliced into the body, not wrapped
 * in a block: with a block gcc contracted the inlined float64 callers'
 * multiply-adds differently (1-2 ulp changes in float64 gradients). */
#ifdef FL_HAVE_FAST_ROWS
#define FL_ROW_ORDINARY_TEST(T, LIMIT, SPREAD)                              \
    T hi, lo;                                                               \
    int no_nan = fl_row_max_min_##T(x, n, &hi, &lo);                        \
    *row_max = hi;                                                          \
    /* the comparisons are false for NaN: a NaN max or min is not ordinary */ \
    return no_nan && hi < (LIMIT) && hi > -(LIMIT)                          \
        && (double)lo >= (double)hi - (SPREAD);
#else
#define FL_ROW_ORDINARY_TEST(T, LIMIT, SPREAD)                              \
    (void)x; (void)n;                                                       \
    *row_max = 0;                                                           \
    return 0;
#endif

#define FL_DEFINE_ROW_MAX_MIN(T, VT, SFX, LANES)                            \
static inline int fl_row_max_min_##T(const T *x, ptrdiff_t n, T *row_max,   \
                                     T *row_min)                            \
{                                                                           \
    ptrdiff_t c = 0;                                                        \
    int any_nan = x[0] != x[0];                                             \
    T hi = x[0], lo = x[0];                                                 \
    FL_ROW_MAX_MIN_VECTORS(T, VT, SFX, LANES)                               \
    for (; c < n; c++) {                                                    \
        any_nan |= x[c] != x[c];                                            \
        hi = x[c] > hi ? x[c] : hi;                                         \
        lo = x[c] < lo ? x[c] : lo;                                         \
    }                                                                       \
    *row_max = hi;                                                          \
    *row_min = lo;                                                          \
    return !any_nan;                                                        \
}

#define FL_DEFINE_ROW_ORDINARY(T, LIMIT, SPREAD)                            \
static inline int fl_row_ordinary_##T(const T *x, ptrdiff_t n, T *row_max)  \
{                                                                           \
    FL_ROW_ORDINARY_TEST(T, LIMIT, SPREAD)                                  \
}

FL_DEFINE_ROW_MAX_MIN(float, __m256, ps, 8)

/* The largest |x_c| of x[0:n] (n >= 1) to *abs_max; returns 0 when x holds a
 * NaN.  By the bits: with the sign bit cleared, a float's bits order as its
 * magnitude does, every NaN above inf, so one integer maximum per 8 logits
 * (one cycle's latency, against four for vmaxps) in the x86-64-v3 build. */
#ifdef FL_HAVE_WIDE_LANES
/* The largest of the bits of |x_c| (fl_row_abs_max_float) in 16 lanes, the
 * last ones masked. */
FL_TARGET_AVX512
static inline int32_t fl_row_abs_bits_max_v16(const float *x, ptrdiff_t n)
{
    const __m512i mask = _mm512_set1_epi32(0x7fffffff);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0;
    ptrdiff_t c = 0;
    for (; c + 32 <= n; c += 32) {
        m0 = _mm512_max_epi32(m0, _mm512_and_si512(mask, _mm512_loadu_si512(x + c)));
        m1 = _mm512_max_epi32(m1, _mm512_and_si512(mask, _mm512_loadu_si512(x + c + 16)));
    }
    for (; c < n; c += 16) {
        __mmask16 live = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
        m0 = _mm512_max_epi32(m0, _mm512_and_si512(mask, _mm512_maskz_loadu_epi32(live, x + c)));
    }
    return _mm512_reduce_max_epi32(_mm512_max_epi32(m0, m1));
}
#endif

static inline int fl_row_abs_max_float(const float *x, ptrdiff_t n, float *abs_max)
{
    const int32_t MAGNITUDE = 0x7fffffff, INF = 0x7f800000;
    int32_t top = 0;
    ptrdiff_t c = 0;
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes) {
        top = fl_row_abs_bits_max_v16(x, n);
        *abs_max = fl_from_bits32(top);
        return top <= INF;
    }
#endif
#ifdef FL_HAVE_FAST_ROWS
    const __m256i mask = _mm256_set1_epi32(MAGNITUDE);
    __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
    for (; c + 32 <= n; c += 32) {
        m0 = _mm256_max_epi32(m0, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(x + c))));
        m1 = _mm256_max_epi32(m1, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(x + c + 8))));
        m2 = _mm256_max_epi32(m2, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(x + c + 16))));
        m3 = _mm256_max_epi32(m3, _mm256_and_si256(mask, _mm256_loadu_si256((const __m256i *)(x + c + 24))));
    }
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_max_epi32(_mm256_max_epi32(m0, m1),
                                                           _mm256_max_epi32(m2, m3)));
    for (int l = 0; l < 8; l++)
        top = lanes[l] > top ? lanes[l] : top;
#endif
    for (; c < n; c++) {
        int32_t bits = fl_bits32(x[c]) & MAGNITUDE;
        top = bits > top ? bits : top;
    }
    *abs_max = fl_from_bits32(top);
    return top <= INF;
}
FL_DEFINE_ROW_ORDINARY(float, 1048576.0f, FL_ROW_SPREAD)

#ifdef FL_HAVE_FAST_ROWS
/* 32 elements of a float exp pass around K ln2 (sh = 1.5 2^23 - K and mv = m
 * in every lane): e'_c = exp(x_c - K ln2) to out unless NULL (it may be x),
 * the terms at x_c != m added to *sum0 and *sum1 (four 8-term float blocks
 * added in pairs, then to double lanes), the count of x_c == m subtracted
 * from *ties (a true lane is -1).  The block of fl_row_exp_sum_float and of
 * _small_rows.h's fl_mid_exp_pass. */
FL_INLINE void fl_exp_block32(const float *x, float *out, __m256 sh, __m256 mv, __m256d *sum0,
                              __m256d *sum1, __m256i *ties)
{
    __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
    __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
    __m256 e0 = fl_exp_around_v8(x0, sh), e1 = fl_exp_around_v8(x1, sh);
    __m256 e2 = fl_exp_around_v8(x2, sh), e3 = fl_exp_around_v8(x3, sh);
    if (out != NULL) {
        _mm256_storeu_ps(out, e0);
        _mm256_storeu_ps(out + 8, e1);
        _mm256_storeu_ps(out + 16, e2);
        _mm256_storeu_ps(out + 24, e3);
    }
    __m256 q0 = _mm256_cmp_ps(x0, mv, _CMP_EQ_OQ), q1 = _mm256_cmp_ps(x1, mv, _CMP_EQ_OQ);
    __m256 q2 = _mm256_cmp_ps(x2, mv, _CMP_EQ_OQ), q3 = _mm256_cmp_ps(x3, mv, _CMP_EQ_OQ);
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_andnot_ps(q0, e0), _mm256_andnot_ps(q1, e1)),
                             _mm256_add_ps(_mm256_andnot_ps(q2, e2), _mm256_andnot_ps(q3, e3)));
    *sum0 = _mm256_add_pd(*sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
    *sum1 = _mm256_add_pd(*sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    __m256i q = _mm256_add_epi32(_mm256_add_epi32(_mm256_castps_si256(q0), _mm256_castps_si256(q1)),
                                 _mm256_add_epi32(_mm256_castps_si256(q2), _mm256_castps_si256(q3)));
    *ties = _mm256_sub_epi32(*ties, q);
}
#endif

#ifdef FL_HAVE_FAST_ROWS
/* The 32 logits at c of the next row (x and output, unless NULL) prefetched
 * into L1 while this row's pass runs. */
FL_INLINE void fl_prefetch_next_32(const float *next_x, float *next_out, ptrdiff_t c)
{
    if (next_x != NULL)
        _mm_prefetch((const char *)(next_x + c), _MM_HINT_T0),
        _mm_prefetch((const char *)(next_x + c + 16), _MM_HINT_T0);
    if (next_out != NULL)
        __builtin_prefetch(next_out + c, 1, 3), __builtin_prefetch(next_out + c + 16, 1, 3);
}
#endif

/* The exp pass of an ordinary row with maximum m: returns
 * S = sum_{c != k} exp(x_c - m) (k the first position of m), writes
 * e'_c = exp(x_c - K ln2) to exp_out[c] unless exp_out is NULL (it may be x)
 * and the row factor exp(K ln2 - m) to *exp_scale, so exp(x_c - m) =
 * *exp_scale e'_c.  The terms at m (e'_c = 1 / exp_scale) are left out of the
 * vector sums and counted instead: their share of S is exactly their count
 * less one.  The vector sums add pairs of 8-term float blocks, then go to
 * double lanes every 32 elements (at most two float roundings per term).
 * next_x and next_out (either may be NULL) are the next row, fetched into
 * the cache meanwhile. */
static inline double fl_row_exp_sum_float(const float *x, ptrdiff_t n, float m, float *exp_out,
                                          const float *next_x, float *next_out,
                                          double *exp_scale)
{
#ifdef FL_HAVE_FAST_ROWS
    const double LOG2E = 1.4426950408889634;
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    double k = nearbyint((double)m * LOG2E);
    float shifter = 12582912.0f - (float)k;                 /* 1.5 * 2^23 - K, exact */
    __m256 sh = _mm256_set1_ps(shifter), mv = _mm256_set1_ps(m);
    __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
    __m256i ties = _mm256_setzero_si256();
    double tail = 0.0;
    ptrdiff_t n_ties = 0, c = 0;
    for (; c + 32 <= n; c += 32) {
        fl_prefetch_next_32(next_x, next_out, c);
        fl_exp_block32(x + c, exp_out ? exp_out + c : NULL, sh, mv, &sum0, &sum1, &ties);
    }
    for (; c < n; c++) {
        float xc = x[c];                                    /* before exp_out[c] (maybe x[c]) */
        float e = fl_exp_around_1(xc, shifter);
        if (exp_out != NULL)
            exp_out[c] = e;
        if (xc == m)
            n_ties++;
        else
            tail += e;
    }
    double lanes[4];
    int32_t tie_lanes[8];
    _mm256_storeu_pd(lanes, _mm256_add_pd(sum0, sum1));
    _mm256_storeu_si256((__m256i *)tie_lanes, ties);
    for (int l = 0; l < 8; l++)
        n_ties += tie_lanes[l];
    double others = ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) + tail;
    /* exp(K ln2 - m): K LN2_HI is exact (|K| < 2^21), the difference nearly so */
    double scale = fl_exp((k * LN2_HI - (double)m) + k * LN2_LO);
    *exp_scale = scale;
    return scale * others + (double)(n_ties - 1);
#else
    (void)x; (void)n; (void)m; (void)exp_out; (void)next_x; (void)next_out;
    *exp_scale = 1.0;
    return 0.0;
#endif
}

#ifdef FL_HAVE_FAST_ROWS
/* v[i][j] <- v[j][i]: an 8 x 8 transpose in registers (pairs interleaved,
 * then quadruples, then the 128-bit halves exchanged). */
static inline void fl_transpose8(__m256 v[8])
{
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

#ifdef FL_HAVE_WIDE_LANES
/* fl_row_affine_float in 16 lanes, the last ones masked (the same FMA per
 * element: the same values). */
FL_TARGET_AVX512
static inline void fl_row_affine_float_v16(float *e, ptrdiff_t n, float a, float b)
{
    __m512 av = _mm512_set1_ps(a), bv = _mm512_set1_ps(b);
    for (ptrdiff_t c = 0; c < n; c += 16) {
        __mmask16 live = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
        _mm512_mask_storeu_ps(e + c, live, _mm512_fmsub_ps(av, _mm512_maskz_loadu_ps(live, e + c), bv));
    }
}
#endif

/* e[c] = a e[c] - b for c in [0, n), in float (one rounding with FMA). */
static inline void fl_row_affine_float(float *e, ptrdiff_t n, float a, float b)
{
    ptrdiff_t c = 0;
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes) {
        fl_row_affine_float_v16(e, n, a, b);
        return;
    }
#endif
#ifdef FL_HAVE_FAST_ROWS
    __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
    for (; c + 16 <= n; c += 16) {
        _mm256_storeu_ps(e + c, _mm256_fmsub_ps(av, _mm256_loadu_ps(e + c), bv));
        _mm256_storeu_ps(e + c + 8, _mm256_fmsub_ps(av, _mm256_loadu_ps(e + c + 8), bv));
    }
    for (; c < n; c++)
        e[c] = fmaf(a, e[c], -b);
#else
    for (; c < n; c++)
        e[c] = a * e[c] - b;
#endif
}


/* ------------------------------------------------------------------ fast float64 softmax rows */

/* The exp pass of an ordinary float64 row in 4 double lanes: the float32
 * pass's scheme (above) in double.
 *
 * A float64 row is "ordinary" when it holds no NaN, |m| < 2^30 and
 * min >= m - 700: every exp(x_c - m) is then a normal double in
 * [e^-700.4, 1], so the clamps and subnormal scalings of fl_exp are decided
 * once for the row.  Per element, with K = rint(m log2 e),
 *
 *   exp(x - K ln2) = 2^(n - K) exp(r),   n = rint(x log2 e),
 *   r = (x - n LN2_HI) - n LN2_LO,       LN2_HI = fl(ln 2), LN2_LO = fl(ln 2 - LN2_HI).
 *
 * x - n LN2_HI is exact as one fused multiply-add: when n != 0 (|x| > 1/4)
 * both are multiples of 2^-54 and the result is below 1/2 in magnitude.  So
 * r errs by the rounding of the second step only (2^-54 |r|), and x - m,
 * whose rounding the careful path must compensate (shift_error), is never
 * formed.  exp(r), |r| <= ln2 / 2 (1 + 2^-20), is fl_exp's Taylor polynomial
 * of degree 13 (remainder 4e-18 relative), and 2^(n - K) one integer add to
 * its exponent field (t = x log2 e + 1.5 2^52 - K holds n - K in its low
 * bits).  The row factor exp(K ln2 - m) is returned apart.
 *
 * The terms go to eight lanes, each summed as in twice the precision
 * (fl_two_sum_add_v4d), the terms at m left out and counted, and the row
 * factor is applied in that precision too (fl_exp_split): S errs by about
 * half an ulp plus the terms' own errors (under an ulp each, not amplified),
 * which the focal loss's q^gamma (q = S / T) multiplies by gamma.
 * Needs FMA: in the baseline build fl_row_ordinary_double answers 0. */
#ifdef FL_HAVE_FAST_ROWS
#define FL_ROW_SPREAD_D 700.0

/* fl_exp_taylor_tail in 4 lanes: (exp(r) - 1 - r) / r^2 = 1/2! + r/3! + ...
 * + r^11/13! by Horner's rule in fused multiply-adds (exp(r) = (p r + 1) r + 1);
 * for fl_exp_around_v4d and fl_exp_nonpositive_v4d (the BCE lanes, compiled
 * under the same condition). */
FL_INLINE __m256d fl_exp_taylor_tail_v4d(__m256d r)
{
    __m256d p = _mm256_set1_pd(1.0 / 6227020800.0);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 479001600.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 39916800.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 3628800.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 362880.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 40320.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 5040.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 720.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 120.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 24.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 6.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.5));
    return p;
}

/* exp(x - K ln2) in 4 lanes, sh = 1.5 2^52 - K (see above) */
FL_INLINE __m256d fl_exp_around_v4d(__m256d x, __m256d sh)
{
    __m256d t = _mm256_fmadd_pd(x, _mm256_set1_pd(1.4426950408889634), sh);
    __m256d n = _mm256_sub_pd(t, sh);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180559945286227e-01), x);  /* exact */
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(2.31904681384629955842e-17), r);
    __m256d p = fl_exp_taylor_tail_v4d(r);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    __m256i scale = _mm256_slli_epi64(_mm256_castpd_si256(t), 52);
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), scale));
}

/* sum += term, its rounding error (Knuth's TwoSum) added to *low: Ogita, Rump
 * and Oishi's Sum2 ("Accurate sum and dot product", SISC 2005), as if summed
 * in twice the precision; 4 lanes, all finite here. */
FL_INLINE void fl_two_sum_add_v4d(__m256d *sum, __m256d *low, __m256d term)
{
    __m256d t = _mm256_add_pd(*sum, term);
    __m256d back = _mm256_sub_pd(t, term);
    __m256d error = _mm256_add_pd(_mm256_sub_pd(*sum, back),
                                  _mm256_sub_pd(term, _mm256_sub_pd(t, back)));
    *low = _mm256_add_pd(*low, error);
    *sum = t;
}

/* Four terms of fl_row_exp_sum_double at x: e' to exp_out unless NULL, the
 * terms other than m into (sum, low), the ties counted (a true lane is -1);
 * only the lanes of live when full is 0 (the row's last, partial vector). */
FL_INLINE void fl_exp_sum_v4d(const double *x, double *exp_out, __m256d sh, __m256d mv,
                              const int full, __m256i live, __m256d *sum, __m256d *low,
                              __m256i *ties)
{
    __m256d xv = full ? _mm256_loadu_pd(x) : _mm256_maskload_pd(x, live);
    __m256d e = fl_exp_around_v4d(xv, sh);
    if (exp_out != NULL) {
        if (full)
            _mm256_storeu_pd(exp_out, e);
        else
            _mm256_maskstore_pd(exp_out, live, e);
    }
    __m256d tie = _mm256_cmp_pd(xv, mv, _CMP_EQ_OQ);
    __m256d term = _mm256_andnot_pd(tie, e);
    if (!full) {
        tie = _mm256_and_pd(tie, _mm256_castsi256_pd(live));
        term = _mm256_and_pd(term, _mm256_castsi256_pd(live));
    }
    fl_two_sum_add_v4d(sum, low, term);
    *ties = _mm256_sub_epi64(*ties, _mm256_castpd_si256(tie));
}
#endif

FL_DEFINE_ROW_MAX_MIN(double, __m256d, pd, 4)
FL_DEFINE_ROW_ORDINARY(double, 1073741824.0, FL_ROW_SPREAD_D)

/* The exp pass of an ordinary float64 row with maximum m: returns
 * S = sum_{c != k} exp(x_c - m) (k the first position of m), writes
 * e'_c = exp(x_c - K ln2) to exp_out[c] unless exp_out is NULL (it may be x)
 * and the row factor exp(K ln2 - m) to *exp_scale, as fl_row_exp_sum_float
 * does.  The factor is applied to the sum to about 2^-60 (fl_exp_split), so
 * S errs by about 2 ulps.  next_x and next_out (either may be NULL) are the
 * next row, fetched into the cache meanwhile. */
static inline double fl_row_exp_sum_double(const double *x, ptrdiff_t n, double m,
                                           double *exp_out, const double *next_x,
                                           double *next_out, double *exp_scale)
{
#ifdef FL_HAVE_FAST_ROWS
    const double LN2_HI = 6.93147180559945286227e-01, LN2_LO = 2.31904681384629955842e-17;
    double k = nearbyint(m * 1.4426950408889634);
    __m256d sh = _mm256_set1_pd(6755399441055744.0 - k), mv = _mm256_set1_pd(m);
    __m256d sum[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    __m256d low[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    __m256i ties = _mm256_setzero_si256();
    const __m256i all = _mm256_set1_epi64x(-1);
    ptrdiff_t c = 0;
    for (; c + 8 <= n; c += 8) {
        if (next_x != NULL)
            _mm_prefetch((const char *)(next_x + c), _MM_HINT_T0);
        if (next_out != NULL)
            __builtin_prefetch(next_out + c, 1, 3);
        fl_exp_sum_v4d(x + c, exp_out ? exp_out + c : NULL, sh, mv, 1, all, &sum[0], &low[0],
                       &ties);
        fl_exp_sum_v4d(x + c + 4, exp_out ? exp_out + c + 4 : NULL, sh, mv, 1, all, &sum[1],
                       &low[1], &ties);
    }
    /* the last n - c < 8 through masks: lanes past n read and write nothing */
    for (int h = 0; c + 4 * h < n; h++) {
        __m256i live = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - c - 4 * h),
                                          _mm256_setr_epi64x(0, 1, 2, 3));
        fl_exp_sum_v4d(x + c + 4 * h, exp_out ? exp_out + c + 4 * h : NULL, sh, mv, 0, live,
                       &sum[h], &low[h], &ties);
    }
    double lanes[8], lows[8];
    int64_t tie_lanes[4];
    _mm256_storeu_pd(lanes, sum[0]);
    _mm256_storeu_pd(lanes + 4, sum[1]);
    _mm256_storeu_pd(lows, _mm256_add_pd(low[0], low[1]));
    _mm256_storeu_si256((__m256i *)tie_lanes, ties);
    /* the lanes by the same rule, in a fixed order: others + others_low */
    double others = 0.0, others_low = (lows[0] + lows[2]) + (lows[1] + lows[3]);
    for (int l = 0; l < 8; l++) {
        double t = others + lanes[l], back = t - lanes[l];
        others_low += (others - back) + (lanes[l] - (t - back));
        others = t;
    }
    ptrdiff_t n_ties = tie_lanes[0] + tie_lanes[1] + tie_lanes[2] + tie_lanes[3];
    /* exp(K ln2 - m) = scale (1 + rel): K LN2_HI - m is exact as one FMA */
    double rel;
    double scale = fl_exp_split(fma(k, LN2_HI, -m) + k * LN2_LO, &rel);
    *exp_scale = scale;
    return fma(scale, others, scale * (others_low + rel * others)) + (double)(n_ties - 1);
#else
    (void)x; (void)n; (void)m; (void)exp_out; (void)next_x; (void)next_out;
    *exp_scale = 1.0;
    return 0.0;
#endif
}

/* sum_c w_c (x_c - m) of an ordinary float64 row (w_c = weight[c], 1 when
 * weight is NULL), in 4 double lanes as in twice the precision: each
 * difference's rounding (TwoSum) and each product's (one FMA) go to the low
 * part, the products to a TwoSum chain per lane.  The careful path's
 * weighted_shifted_sum (_multiclass_kernels) to about an ulp, vectorised; the
 * baseline build never calls it (fl_row_ordinary_double answers 0 there). */
static inline double fl_row_weighted_shift_double(const double *x, ptrdiff_t n, double m,
                                                  const double *weight)
{
#ifdef FL_HAVE_FAST_ROWS
    const __m256d mv = _mm256_set1_pd(m), minus_m = _mm256_set1_pd(-m);
    __m256d sum = _mm256_setzero_pd(), low = _mm256_setzero_pd();
    ptrdiff_t c = 0;
    for (; c < n; c += 4) {
        __m256i live = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - c), _mm256_setr_epi64x(0, 1, 2, 3));
        __m256d xv = _mm256_maskload_pd(x + c, live);
        __m256d w = weight ? _mm256_maskload_pd(weight + c, live) : _mm256_set1_pd(1.0);
        __m256d z = _mm256_sub_pd(xv, mv), back = _mm256_sub_pd(z, xv);
        __m256d dz = _mm256_add_pd(_mm256_sub_pd(xv, _mm256_sub_pd(z, back)),
                                   _mm256_sub_pd(minus_m, back));          /* x - m = z + dz */
        __m256d p = _mm256_mul_pd(w, z);
        __m256d p_low = _mm256_fmadd_pd(w, dz, _mm256_fmsub_pd(w, z, p));
        p = _mm256_and_pd(p, _mm256_castsi256_pd(live));
        p_low = _mm256_and_pd(p_low, _mm256_castsi256_pd(live));
        low = _mm256_add_pd(low, p_low);
        fl_two_sum_add_v4d(&sum, &low, p);
    }
    double lanes[4], lows[4];
    _mm256_storeu_pd(lanes, sum);
    _mm256_storeu_pd(lows, low);
    double total = 0.0, total_low = (lows[0] + lows[2]) + (lows[1] + lows[3]);
    for (int l = 0; l < 4; l++) {
        double t = total + lanes[l], back = t - lanes[l];
        total_low += (total - back) + (lanes[l] - (t - back));
        total = t;
    }
    return total + total_low;
#else
    (void)x; (void)n; (void)m; (void)weight;
    return 0.0;
#endif
}


/* ------------------------------------------------------------------ soft-capped float32 rows */

/* The exp pass of a soft-capped float32 row without NaN whose capped logits
 * span at most 85 (so every exp is a normal float), in float64 lanes:
 * with (x'_c, s_c) the capped logit and its slope (fl_softcap_of, a = |x_c|
 * (2 / cap)), m' = capped_max the capped row maximum (x_c = row_max there),
 * z_c = x'_c - m' and e_c = exp(z_c) (fl_exp_for_float), writes e_c and
 * s_c, rounded to float, to exp_out and slope_out unless NULL (exp_out may
 * be x: each block of 8 is read before it is written), adds sum_c w_c z_c
 * to *weighted_shift unless it is NULL (w_c = weight[c], 1 without), and
 * returns S = the sum of e_c over the classes with x_c != row_max plus
 * their count less one (the terms at the maximum, e_c = 1, are counted).
 * The x86-64-v3 build takes blocks of 8 in intrinsics (fl_softcap_exp_v4d,
 * to float32's needs); the portable loop the rest. */
#ifdef FL_HAVE_FAST_ROWS
/* exp(-a) for 0 <= a <= 700 in 4 double lanes, to about 2^-32 relative (degree
 * 8; 7 with low_degree, about 2^-27.6) - what a float32 result needs; 2^n is
 * one normal factor (n >= -1010). */
#define FL_DEFINE_EXP_NEG_PD(SUFFIX, W, VD, ATTR)                                          \
ATTR FL_INLINE VD fl_exp_neg_##SUFFIX(VD a, int low_degree)                                \
{                                                                                          \
    const VD SH = FL_W(W, set1_pd)(6755399441055744.0);               /* 1.5 * 2^52 */     \
    VD t = FL_W(W, fmadd_pd)(a, FL_W(W, set1_pd)(-1.4426950408889634), SH);               \
    VD n = FL_W(W, sub_pd)(t, SH);                                                         \
    VD r = FL_W(W, fnmadd_pd)(n, FL_W(W, set1_pd)(6.93147180369123816490e-01),             \
                              FL_W(W, sub_pd)(FL_W(W, setzero_pd)(), a));                  \
    r = FL_W(W, fnmadd_pd)(n, FL_W(W, set1_pd)(1.90821492927058770002e-10), r);            \
    VD p = low_degree ? FL_W(W, set1_pd)(1.0 / 5040.0)                                     \
                      : FL_W(W, fmadd_pd)(FL_W(W, set1_pd)(1.0 / 40320.0), r,              \
                                          FL_W(W, set1_pd)(1.0 / 5040.0));                 \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(1.0 / 720.0));                            \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(1.0 / 120.0));                            \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(1.0 / 24.0));                             \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(1.0 / 6.0));                              \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(0.5));                                    \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(1.0));                                    \
    p = FL_W(W, fmadd_pd)(p, r, FL_W(W, set1_pd)(1.0));                                    \
    return FL_W(W, castsi##W##_pd)(FL_W(W, add_epi64)(FL_W(W, castpd_si##W)(p),           \
                                   FL_W(W, slli_epi64)(FL_W(W, castpd_si##W)(t), 52)));    \
}
FL_DEFINE_EXP_NEG_PD(v4d, 256, __m256d, FL_TARGET_V3)

/* fl_softcap_of and the exp of the capped logit in 4 double lanes, to float32's
 * needs: q = exp(-a) to 2^-32 (so tanh, hence x', to about 2^-33 absolute),
 * 1 / (1 + q) from rcpps and two Newton steps (2^-44), exp(x' - m') to 2^-27.6.
 * a is clamped to 700 (x = +-inf: slope 4 e^-700, 0 in float). */
static inline __m256d fl_softcap_exp_v4d(__m256d v, __m256d scale, __m256d cap,
                                         __m256d capped_max, __m256d *z, __m256d *slope)
{
    const __m256d one = _mm256_set1_pd(1.0), sign_bit = _mm256_set1_pd(-0.0);
    __m256d a = _mm256_min_pd(_mm256_mul_pd(_mm256_andnot_pd(sign_bit, v), scale),
                              _mm256_set1_pd(700.0));
    __m256d q = fl_exp_neg_v4d(a, 0);
    __m256d y = _mm256_add_pd(one, q);
    __m256d d = _mm256_cvtps_pd(_mm_rcp_ps(_mm256_cvtpd_ps(y)));
    d = _mm256_fmadd_pd(d, _mm256_fnmadd_pd(y, d, one), d);
    d = _mm256_fmadd_pd(d, _mm256_fnmadd_pd(y, d, one), d);
    __m256d capped = _mm256_or_pd(_mm256_mul_pd(cap, _mm256_mul_pd(_mm256_sub_pd(one, q), d)),
                                  _mm256_and_pd(v, sign_bit));
    *slope = _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(4.0), q), _mm256_mul_pd(d, d));
    *z = _mm256_sub_pd(capped, capped_max);
    return fl_exp_neg_v4d(_mm256_sub_pd(_mm256_setzero_pd(), *z), 1);
}
#endif

static inline double fl_row_softcap_exp_sum_float(const float *x, ptrdiff_t n, double cap,
                                                  float row_max, double capped_max,
                                                  float *exp_out, float *slope_out,
                                                  const double *weight, double *weighted_shift)
{
    const double scale = 2.0 / cap;
    double lanes[8], shifts[8], e[8], s[8], z[8];
    int ties[8];
    ptrdiff_t c = 0;
    for (int l = 0; l < 8; l++) {
        lanes[l] = shifts[l] = 0.0;
        ties[l] = 0;
    }
#ifdef FL_HAVE_FAST_ROWS
    {
        const __m256d sc = _mm256_set1_pd(scale), cp = _mm256_set1_pd(cap);
        const __m256d mx = _mm256_set1_pd(capped_max);
        const __m256 rm = _mm256_set1_ps(row_max);
        __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
        __m256d shift0 = _mm256_setzero_pd(), shift1 = _mm256_setzero_pd();
        __m256i tie_count = _mm256_setzero_si256();
        for (; c + 8 <= n; c += 8) {
            __m256 xv = _mm256_loadu_ps(x + c);
            __m256d z0, z1, s0, s1;
            __m256d e0 = fl_softcap_exp_v4d(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), sc, cp,
                                            mx, &z0, &s0);
            __m256d e1 = fl_softcap_exp_v4d(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), sc,
                                            cp, mx, &z1, &s1);
            __m256 tie = _mm256_cmp_ps(xv, rm, _CMP_EQ_OQ);
            __m256i tie_i = _mm256_castps_si256(tie);
            __m256d tie0 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(tie_i)));
            __m256d tie1 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(tie_i, 1)));
            sum0 = _mm256_add_pd(sum0, _mm256_andnot_pd(tie0, e0));
            sum1 = _mm256_add_pd(sum1, _mm256_andnot_pd(tie1, e1));
            tie_count = _mm256_sub_epi32(tie_count, tie_i);
            if (weighted_shift != NULL) {
                __m256d w0 = weight == NULL ? _mm256_set1_pd(1.0) : _mm256_loadu_pd(weight + c);
                __m256d w1 = weight == NULL ? _mm256_set1_pd(1.0) : _mm256_loadu_pd(weight + c + 4);
                shift0 = _mm256_fmadd_pd(w0, z0, shift0);
                shift1 = _mm256_fmadd_pd(w1, z1, shift1);
            }
            if (exp_out != NULL) {
                _mm256_storeu_ps(exp_out + c, _mm256_set_m128(_mm256_cvtpd_ps(e1), _mm256_cvtpd_ps(e0)));
                _mm256_storeu_ps(slope_out + c, _mm256_set_m128(_mm256_cvtpd_ps(s1), _mm256_cvtpd_ps(s0)));
            }
        }
        double l4[4], w4[4];
        int32_t t8[8];
        _mm256_storeu_pd(l4, _mm256_add_pd(sum0, sum1));
        _mm256_storeu_pd(w4, _mm256_add_pd(shift0, shift1));
        _mm256_storeu_si256((__m256i *)t8, tie_count);
        for (int l = 0; l < 4; l++) {
            lanes[l] += l4[l];
            shifts[l] += w4[l];
        }
        for (int l = 0; l < 8; l++)
            ties[l] += t8[l];
    }
#endif
    for (;; c += 8) {
        int width = n - c < 8 ? (int)(n - c) : 8;
        if (width <= 0)
            break;
        if (width == 8) {
            for (int l = 0; l < 8; l++) {
                double v = (double)x[c + l], capped;
                fl_softcap_of(fabs(v) * scale, 0.0, v, cap, &capped, &s[l]);
                z[l] = capped - capped_max;
                e[l] = fl_exp_for_float(z[l]);
            }
        } else {
            for (int l = 0; l < width; l++) {
                double v = (double)x[c + l], capped;
                fl_softcap_of(fabs(v) * scale, 0.0, v, cap, &capped, &s[l]);
                z[l] = capped - capped_max;
                e[l] = fl_exp_for_float(z[l]);
            }
            for (int l = width; l < 8; l++)
                e[l] = s[l] = z[l] = 0.0;
        }
        for (int l = 0; l < width; l++) {
            int tie = x[c + l] == row_max;
            lanes[l] += tie ? 0.0 : e[l];
            ties[l] += tie;
        }
        if (weighted_shift != NULL)
            for (int l = 0; l < width; l++)
                shifts[l] += (weight == NULL ? 1.0 : weight[c + l]) * z[l];
        if (exp_out != NULL)
            for (int l = 0; l < width; l++) {
                exp_out[c + l] = (float)e[l];
                slope_out[c + l] = (float)s[l];
            }
    }
    double others = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                  + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    int n_ties = 0;
    for (int l = 0; l < 8; l++)
        n_ties += ties[l];
    if (weighted_shift != NULL)
        *weighted_shift += ((shifts[0] + shifts[4]) + (shifts[1] + shifts[5]))
                         + ((shifts[2] + shifts[6]) + (shifts[3] + shifts[7]));
    return others + (double)(n_ties - 1);
}

/* g[c] = (a e[c] - b w_c) slope[c] in double, rounded to float (w_c = weight[c], 1
 * without): the soft-capped cross-entropy's gradient from the exps and slopes. */
static inline void fl_row_affine_slope_float(float *e, const float *slope, ptrdiff_t n,
                                             double a, double b, const double *weight)
{
    if (weight == NULL)
        for (ptrdiff_t c = 0; c < n; c++)
            e[c] = (float)((a * (double)e[c] - b) * (double)slope[c]);
    else
        for (ptrdiff_t c = 0; c < n; c++)
            e[c] = (float)((a * (double)e[c] - b * weight[c]) * (double)slope[c]);
}


/* The exp pass of a soft-capped float32 row whose logits are small against
 * the cap, in float lanes (x86-64-v3 build; elsewhere it answers 0 and the
 * caller takes fl_row_softcap_exp_sum_float).  Small: no NaN, |x| <= cap / 2,
 * and corr below <= 1 at the row's largest |x| (the caller decides).  Then
 *
 *   x' = cap tanh(x / cap) = x - corr,  corr = x s P(s),  s = x^2 / (3 cap^2),
 *   P(s) = 3 (u - tanh u) / u^3 = 1 - 6s/5 + ...   (u^2 = 3s <= 1/4)
 *
 * with P(s) = 1 + s Q(s), Q a cubic fit on [0, 1/12] (relative error 2^-25.7,
 * 2^-24.2 evaluated in float; P's constant term is exact), so corr errs by
 * its few float roundings against at most 1: the exps are formed around K ln2
 * as in fl_row_exp_sum_float (FL_EXP_POLY6), with n = rint(x' log2 e) and
 * the reduced argument r = (x - n LN2_HI) - corr - n LN2_LO, whose first
 * difference is exact (fl_exp_shifted_v8), so r errs by about 2^-24 absolute
 * at worst and exp(x' - m') keeps float accuracy although x' itself is never
 * held to it.  The slope 1 - (x' / cap)^2 >= 0.78 (no cancellation) is
 * multiplied in: exp_out (may be x, or NULL) receives e'_c s_c, the
 * gradient's factor when no term needs the exps alone (no label smoothing;
 * e'_c >= 2^-124 in an ordinary row, so the product is a normal float).
 * The row's terms are taken relative to the label's y, not to the row's
 * maximum (no ties to count, and no mask in the loop but in the block that
 * holds y): with m' = capped_y = x'_y (in double) and K = rint(m' log2 e),
 * returns S = sum_{c != y} exp(x'_c - x'_y) and the row factor
 * exp(K ln2 - m') (so p_c = e'_c factor / (1 + S)); the capped logits span
 * at most 85 (the caller's condition), so every e'_c = exp(x'_c - K ln2) is
 * a normal float either side of 1. */
#ifdef FL_HAVE_FAST_ROWS
/* exp(base - corr - n ln2) 2^(n - K) for n = rint((base - corr) log2 e), with
 * shifter = 1.5 * 2^23 - K: base - n LN2_HI is exact (Sterbenz), so r errs by
 * corr's own error and two roundings of about 2^-26.  The tail of the
 * soft-capped lanes below. */
#define FL_DEFINE_EXP_SHIFTED(SUFFIX, W, V, ATTR)                                          \
ATTR FL_INLINE V fl_exp_shifted_##SUFFIX(V base, V corr, V shifter)                        \
{                                                                                          \
    V t = FL_W(W, fmadd_ps)(FL_W(W, sub_ps)(base, corr), FL_W(W, set1_ps)(FL_LOG2E_F),     \
                            shifter);                                                      \
    V nn = FL_W(W, sub_ps)(t, shifter);                                                    \
    V r = FL_W(W, fnmadd_ps)(nn, FL_W(W, set1_ps)(FL_LN2_HI_F), base);   /* exact */       \
    r = FL_W(W, sub_ps)(r, corr);                                                          \
    r = FL_W(W, fnmadd_ps)(nn, FL_W(W, set1_ps)(FL_LN2_LO_F), r);                          \
    V p;                                                                                   \
    FL_EXP_POLY6(FL_W(W, fmadd_ps), FL_W(W, set1_ps), p, r)                                \
    return FL_AS_FLOAT(W, FL_W(W, add_epi32)(FL_AS_INT(W, p),                              \
                                             FL_W(W, slli_epi32)(FL_AS_INT(W, t), 23)));   \
}
FL_DEFINE_EXP_SHIFTED(v8, 256, __m256, FL_TARGET_V3)

/* The soft-capped exp of 8 lanes (see above): e = exp(x' - K ln2) and the
 * slope 1 - (x' / cap)^2, with k3 = 1 / (3 cap^2). */
FL_INLINE __m256 fl_softcap_exp_around_v8(__m256 xv, __m256 inv, __m256 k3, __m256 shifter,
                                          __m256 *slope)
{
    __m256 s = _mm256_mul_ps(_mm256_mul_ps(xv, xv), k3);
    __m256 q = _mm256_set1_ps(1.6976616382598877f);
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(-1.7410846948623657f));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(1.4563246965408325f));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(-1.1999930143356323f));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(1.0f));
    __m256 corr = _mm256_mul_ps(_mm256_mul_ps(xv, s), q);
    __m256 w = _mm256_mul_ps(_mm256_sub_ps(xv, corr), inv);
    *slope = _mm256_fnmadd_ps(w, w, _mm256_set1_ps(1.0f));
    return fl_exp_shifted_v8(xv, corr, shifter);
}
#endif

#ifdef FL_HAVE_FAST_ROWS
/* The last blocks of a soft-capped float32 row (c counts up to n by 8), read
 * and written by masked loads and stores (lanes past n read as 0.0, a logit
 * every lane function takes, and are neither stored nor summed):
 * LANE(xv, ..., &slope) gives 8 exps and slopes, added to the double sums
 * sum0 and sum1 but for the label's term.  Unless exp_out is NULL, the exps go
 * to exp_out and the slopes to SLOPES, or, when SLOPES is NULL, their products
 * to exp_out.  Shared by the row functions below. */
#define FL_SOFTCAP_ROW_TAIL(LANE, SLOPES, ...)                                  \
    for (; c < n; c += 8) {                                                     \
        __m256i live_ = _mm256_cmpgt_epi32(                                     \
            _mm256_set1_epi32(n - c < 8 ? (int)(n - c) : 8),                    \
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));                         \
        __m256 s0, e0 = LANE(_mm256_maskload_ps(x + c, live_), __VA_ARGS__, &s0); \
        if (exp_out != NULL && (SLOPES) == NULL)                                \
            _mm256_maskstore_ps(exp_out + c, live_, _mm256_mul_ps(e0, s0));     \
        else if (exp_out != NULL) {                                             \
            _mm256_maskstore_ps(exp_out + c, live_, e0);                        \
            _mm256_maskstore_ps((SLOPES) + c, live_, s0);                       \
        }                                                                       \
        e0 = _mm256_and_ps(e0, _mm256_castsi256_ps(live_));                     \
        if ((size_t)(label - c) < 8)                                            \
            e0 = fl_without_label_v8(e0, c, label);                             \
        sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(e0))); \
        sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1))); \
    }

/* A soft-capped row's S = exp(K ln2 - m') sum, from the double partial sums
 * of the vector lanes, and K; the row factor
 * exp(K ln2 - m') goes to exp_scale. */
static inline double fl_softcap_row_total(__m256d sum0, __m256d sum1, double k,
                                          double capped_y, double *exp_scale)
{
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(sum0, sum1));
    double others = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
    double scale = fl_exp((k * LN2_HI - capped_y) + k * LN2_LO);
    *exp_scale = scale;
    return scale * others;
}

/* e (the 8 lanes of classes c0 to c0 + 7) with the label's lane set to 0 when
 * the label lies among them: the one block of a soft-capped row whose sum
 * leaves a term out (the callers test whether the label lies in their blocks) */
FL_INLINE __m256 fl_without_label_v8(__m256 e, ptrdiff_t c0, ptrdiff_t label)
{
    ptrdiff_t at = label - c0;
    __m256i lane = _mm256_set1_epi32(at >= 0 && at < 8 ? (int)at : -1);
    __m256i hit = _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), lane);
    return _mm256_andnot_ps(_mm256_castsi256_ps(hit), e);
}
#endif

static inline double fl_row_softcap_exp_sum_small_float(const float *x, ptrdiff_t n,
                                                        ptrdiff_t label, double cap,
                                                        double capped_y,
                                                        float *exp_out, const float *next_x,
                                                        float *next_out, double *exp_scale)
{
#ifdef FL_HAVE_FAST_ROWS
    const double LOG2E = 1.4426950408889634;
    double k = nearbyint(capped_y * LOG2E);
    float shifter = 12582912.0f - (float)k;
    const __m256 sh = _mm256_set1_ps(shifter);
    const __m256 inv = _mm256_set1_ps((float)(1.0 / cap));
    const __m256 k3 = _mm256_set1_ps((float)(1.0 / (3.0 * cap * cap)));
    __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
    ptrdiff_t c = 0;
    for (; c + 32 <= n; c += 32) {
        fl_prefetch_next_32(next_x, next_out, c);
        __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        __m256 x2 = _mm256_loadu_ps(x + c + 16), x3 = _mm256_loadu_ps(x + c + 24);
        __m256 s0, s1, s2, s3;
        __m256 e0 = fl_softcap_exp_around_v8(x0, inv, k3, sh, &s0);
        __m256 e1 = fl_softcap_exp_around_v8(x1, inv, k3, sh, &s1);
        __m256 e2 = fl_softcap_exp_around_v8(x2, inv, k3, sh, &s2);
        __m256 e3 = fl_softcap_exp_around_v8(x3, inv, k3, sh, &s3);
        if (exp_out != NULL) {
            _mm256_storeu_ps(exp_out + c, _mm256_mul_ps(e0, s0));
            _mm256_storeu_ps(exp_out + c + 8, _mm256_mul_ps(e1, s1));
            _mm256_storeu_ps(exp_out + c + 16, _mm256_mul_ps(e2, s2));
            _mm256_storeu_ps(exp_out + c + 24, _mm256_mul_ps(e3, s3));
        }
        if ((size_t)(label - c) < 32) {
            e0 = fl_without_label_v8(e0, c, label);
            e1 = fl_without_label_v8(e1, c + 8, label);
            e2 = fl_without_label_v8(e2, c + 16, label);
            e3 = fl_without_label_v8(e3, c + 24, label);
        }
        __m256 sum = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(sum)));
        sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(sum, 1)));
    }
    FL_SOFTCAP_ROW_TAIL(fl_softcap_exp_around_v8, (float *)NULL, inv, k3, sh)
    return fl_softcap_row_total(sum0, sum1, k, capped_y, exp_scale);
#else
    (void)x; (void)n; (void)label; (void)cap; (void)capped_y; (void)exp_out;
    (void)next_x; (void)next_out;
    *exp_scale = 1.0;
    return 0.0;
#endif
}


/* The exp pass of a soft-capped float32 row in float lanes whatever the size
 * of its logits against the cap (x86-64-v3 build; elsewhere it answers 0 and
 * the caller takes fl_row_softcap_exp_sum_float).  For a float cap (the
 * caller checks (float)cap == cap, cap <= 6, no NaN and |x| <= 40 cap, so
 * that q below is a normal float).  Per logit, with a = 2 |x| / cap (its
 * rounding folded into the exp's reduced argument) and q = exp(-a):
 *
 *   |x| <= cap:  x' = x - corr,        corr = x v R(v), v = (x / cap)^2,
 *                R(v) = (u - tanh u) / u^3 (fl_softcap_tail_v8);
 *   |x| > cap:   x' = sign(x) cap - corr,  corr = sign(x) 2 cap q / (1 + q);
 *
 * corr is at most 0.24 cap either way, and as in fl_softcap_exp_around_v8 the
 * exp's reduced argument is (base - n LN2_HI) - corr - n LN2_LO with an exact
 * first difference, so exp(x' - m') errs by the few roundings of corr
 * (about 2^-21.5 relative at cap 5, measured) and never holds x' rounded.
 * The slope is 4 q / (1 + q)^2 (no cancellation), from rcpps, one Newton step
 * and a correction by the step's residual on 1 + q held exactly (about
 * 2^-22.3 relative); blocks of 8 logits all within cap take
 * fl_softcap_exp_near_v8 instead (cheaper: no q; the bound leaves about one
 * block in ten of N(0, 2^2) logits at cap 5 to the far formula, and keeps the
 * near slope's cancellation 1 - tanh^2 mild).  The exps
 * and the slopes go to exp_out and slope_out, or, when slope_out is NULL,
 * their products e'_c s_c to exp_out (as fl_row_softcap_exp_sum_small_float
 * does; normal floats for |x| <= 32 cap, the caller's condition).  Returns S
 * and the row factor as
 * fl_row_softcap_exp_sum_small_float does. */
#ifdef FL_HAVE_FAST_ROWS
/* The bound of the near lanes below: |x| <= FL_SOFTCAP_NEAR cap. */
#define FL_SOFTCAP_NEAR 1.0f

/* v = (x / cap)^2 rounded once, from x^2 held exactly as xx + xx_lo and
 * inv2 + inv2_lo = 1 / cap^2 (to about 2^-48): the argument of the near
 * lanes' polynomials (five operations). */
#define FL_DEFINE_SOFTCAP_V(SUFFIX, W, V, ATTR)                                            \
ATTR FL_INLINE V fl_softcap_v_##SUFFIX(V xv, V inv2, V inv2_lo)                            \
{                                                                                          \
    V xx = FL_W(W, mul_ps)(xv, xv);                                                        \
    V xx_lo = FL_W(W, fmsub_ps)(xv, xv, xx);                             /* exact */       \
    return FL_W(W, fmadd_ps)(xx, inv2, FL_W(W, fmadd_ps)(xx_lo, inv2,                      \
                                                         FL_W(W, mul_ps)(xx, inv2_lo)));   \
}
FL_DEFINE_SOFTCAP_V(v8, 256, __m256, FL_TARGET_V3)

/* R(v) = (u - tanh u) / u^3 for v = u^2 in [0, 1] (|u| <= FL_SOFTCAP_NEAR),
 * by Horner's rule: a degree-7 fit weighted by u^3 (the size of the
 * correction x v R(v) it makes), |u^3 dR| < 2^-31.9 before the float
 * roundings (2^-29.3 of corr at cap 6), 2^-26.1 with the evaluation's.
 * (Estrin's scheme, pairs then v^2 and v^4, measured 2% faster in the near
 * lanes but 2^-25.2 with its roundings: a gradient ulp more at cap 5.) */
#define FL_DEFINE_SOFTCAP_TAIL(SUFFIX, W, V, ATTR)                                         \
ATTR FL_INLINE V fl_softcap_tail_##SUFFIX(V v)                                             \
{                                                                                          \
    V r = FL_W(W, set1_ps)(-0.00012087698996765539f);                                      \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(0.0008395493496209383f));                 \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(-0.003077746368944645f));                 \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(0.008596455678343773f));                  \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(-0.021786775439977646f));                 \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(0.05395417660474777f));                   \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(-0.1333322525024414f));                   \
    r = FL_W(W, fmadd_ps)(r, v, FL_W(W, set1_ps)(0.3333333134651184f));                    \
    return r;                                                                              \
}
FL_DEFINE_SOFTCAP_TAIL(v8, 256, __m256, FL_TARGET_V3)

/* The far formula's part of x' (beyond the near bound): corr_far = sign(x) 2
 * cap q / (1 + q), so that x' = sign(x) cap - corr_far, and the slope
 * 4 q / (1 + q)^2 (for every lane); see above. */
FL_INLINE __m256 fl_softcap_far_corr_v8(__m256 xv, __m256 k_hi, __m256 k_lo, __m256 cap_f,
                                        __m256 *slope)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 qsh = _mm256_set1_ps(12582912.0f);
    __m256 ax = _mm256_andnot_ps(sign_bit, xv);
    /* q = exp(-a), a = |x| (2 / cap) with its rounding folded in */
    __m256 a = _mm256_mul_ps(ax, k_hi);
    __m256 a_lo = _mm256_fmadd_ps(ax, k_lo, _mm256_fmsub_ps(ax, k_hi, a));
    __m256 tq = _mm256_fnmadd_ps(a, _mm256_set1_ps(FL_LOG2E_F), qsh);
    __m256 nq = _mm256_sub_ps(tq, qsh);
    __m256 rq = _mm256_fnmsub_ps(nq, _mm256_set1_ps(FL_LN2_HI_F), a);   /* -a - n LN2_HI */
    rq = _mm256_sub_ps(rq, a_lo);
    rq = _mm256_fnmadd_ps(nq, _mm256_set1_ps(FL_LN2_LO_F), rq);
    __m256 pq;
    FL_EXP_POLY(_mm256_fmadd_ps, _mm256_set1_ps, pq, rq)
    __m256 q = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(pq),
                                                    _mm256_slli_epi32(_mm256_castps_si256(tq), 23)));
    /* d = 1 / (1 + q) by rcpps and one Newton step on 1 + q held exactly (y + y_lo);
     * e = 1 - (1 + q) d, its relative error, then corrects q d and the slope 4 q d^2 */
    __m256 y = _mm256_add_ps(one, q);
    __m256 y_lo = _mm256_add_ps(_mm256_sub_ps(one, y), q);
    __m256 d = _mm256_rcp_ps(y);
    d = _mm256_fmadd_ps(d, _mm256_fnmadd_ps(y, d, one), d);
    __m256 e = _mm256_fnmadd_ps(y_lo, d, _mm256_fnmadd_ps(y, d, one));
    __m256 qd = _mm256_mul_ps(q, d);
    *slope = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), qd),
                           _mm256_fmadd_ps(_mm256_add_ps(e, e), d, d));
    qd = _mm256_fmadd_ps(qd, e, qd);
    return _mm256_or_ps(_mm256_mul_ps(_mm256_add_ps(cap_f, cap_f), qd),
                        _mm256_and_ps(xv, sign_bit));
}

FL_INLINE __m256 fl_softcap_exp_mid_v8(__m256 xv, __m256 inv2, __m256 inv2_lo, __m256 k_hi,
                                       __m256 k_lo, __m256 cap_f, __m256 shifter, __m256 *slope)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 ax = _mm256_andnot_ps(sign_bit, xv);
    __m256 sx = _mm256_and_ps(xv, sign_bit);
    __m256 corr_far = fl_softcap_far_corr_v8(xv, k_hi, k_lo, cap_f, slope);
    /* |x| <= cap: x' = x - x v R(v); beyond: x' = sign (cap - 2 cap q / (1 + q))
     * (v clamped to 1 there: only kept finite) */
    __m256 v = _mm256_min_ps(fl_softcap_v_v8(xv, inv2, inv2_lo), one);
    __m256 corr = _mm256_mul_ps(_mm256_mul_ps(xv, v), fl_softcap_tail_v8(v));
    __m256 far = _mm256_cmp_ps(ax, _mm256_mul_ps(cap_f, _mm256_set1_ps(FL_SOFTCAP_NEAR)), _CMP_GT_OQ);
    __m256 base = _mm256_blendv_ps(xv, _mm256_or_ps(cap_f, sx), far);
    corr = _mm256_blendv_ps(corr, corr_far, far);
    return fl_exp_shifted_v8(base, corr, shifter);
}

/* fl_softcap_exp_mid_v8 for lanes that are all beyond the near bound: the far
 * formula alone (the same values). */
FL_INLINE __m256 fl_softcap_exp_far_v8(__m256 xv, __m256 k_hi, __m256 k_lo, __m256 cap_f,
                                       __m256 shifter, __m256 *slope)
{
    __m256 corr_far = fl_softcap_far_corr_v8(xv, k_hi, k_lo, cap_f, slope);
    __m256 base = _mm256_or_ps(cap_f, _mm256_and_ps(xv, _mm256_set1_ps(-0.0f)));
    return fl_exp_shifted_v8(base, corr_far, shifter);
}
/* fl_softcap_exp_mid_v8 for lanes that are all near (|x| <= cap): the same
 * x' and exp, and the slope 1 - (x' / cap)^2 = 1 - v t^2 with t = x' / x =
 * 1 - v R(v) in [0.76, 1] (three operations on R, instead of q =
 * exp(-2 |x| / cap); the slope is at least 0.42 there, so the roundings of
 * v t^2 are magnified at most 1.4 times: about 2^-22 relative). */
#define FL_DEFINE_SOFTCAP_NEAR(SUFFIX, W, V, ATTR)                                         \
ATTR FL_INLINE V fl_softcap_exp_near_##SUFFIX(V xv, V inv2, V inv2_lo, V shifter, V *slope) \
{                                                                                          \
    const V one = FL_W(W, set1_ps)(1.0f);                                                  \
    V v = fl_softcap_v_##SUFFIX(xv, inv2, inv2_lo);                                        \
    V r = fl_softcap_tail_##SUFFIX(v);                                                     \
    V t = FL_W(W, fnmadd_ps)(v, r, one);                                                   \
    *slope = FL_W(W, fnmadd_ps)(FL_W(W, mul_ps)(v, t), t, one);                            \
    V corr = FL_W(W, mul_ps)(FL_W(W, mul_ps)(xv, v), r);                                   \
    return fl_exp_shifted_##SUFFIX(xv, corr, shifter);                                     \
}
FL_DEFINE_SOFTCAP_NEAR(v8, 256, __m256, FL_TARGET_V3)

/* A block of 8 logits: fl_softcap_exp_mid_v8 only when one of them is beyond
 * the near bound, else fl_softcap_exp_near_v8. */
FL_INLINE __m256 fl_softcap_exp_block_v8(__m256 xv, __m256 inv2, __m256 inv2_lo, __m256 k_hi,
                                         __m256 k_lo, __m256 cap_f, __m256 shifter,
                                         __m256 *slope)
{
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), xv);
    __m256 near = _mm256_mul_ps(cap_f, _mm256_set1_ps(FL_SOFTCAP_NEAR));
    if (_mm256_movemask_ps(_mm256_cmp_ps(ax, near, _CMP_GT_OQ)))
        return fl_softcap_exp_mid_v8(xv, inv2, inv2_lo, k_hi, k_lo, cap_f, shifter, slope);
    return fl_softcap_exp_near_v8(xv, inv2, inv2_lo, shifter, slope);
}

/* ------------------------------------------------------------------ the mid lanes on AVX-512 */
#ifdef FL_HAVE_WIDE_LANES

/* The exp pass of the mid lanes in 16 float lanes, for CPUs with AVX-512
 * (fl_row_softcap_exp_sum_mid_float takes it when fl_set_wide_lanes has
 * found them and not been told otherwise): the same maths as the 8 lanes
 * (the near lanes' functions above, built for 16), so every lane computes the
 * same value; blocks with a logit beyond the near bound (about one in five of
 * N(0, 2^2) logits at cap 5) are taken apart (fl_softcap_far_blocks_v16); the
 * row's last logits by masked loads and stores; the sums in 8 double lanes.
 * On AVX-512 CPUs with two 512-bit FMA units (Intel's server cores) the near
 * lanes' floating-point work, which bounds the pass, takes about 0.6 of the
 * time it takes in 8 lanes (a loop over an L1-resident row, measured on an
 * Intel Xeon). */
FL_DEFINE_EXP_SHIFTED(v16, 512, __m512, FL_TARGET_AVX512)
FL_DEFINE_SOFTCAP_V(v16, 512, __m512, FL_TARGET_AVX512)
FL_DEFINE_SOFTCAP_TAIL(v16, 512, __m512, FL_TARGET_AVX512)
FL_DEFINE_SOFTCAP_NEAR(v16, 512, __m512, FL_TARGET_AVX512)

/* The far lanes of the 16 lanes go apart: the pass stores each block's mask of
 * logits beyond the near bound (FL_SOFTCAP_BLOCKS blocks at a time; a block
 * with one is about one in five of N(0, 2^2) logits at cap 5, and a branch on
 * it mispredicts), then fl_softcap_far_blocks_v16 packs the classes of the
 * far logits, FL_SOFTCAP_FAR at a time, for fl_softcap_far_lanes_v16. */
#define FL_SOFTCAP_BLOCKS 1024
#define FL_SOFTCAP_FAR 256

/* The row's constants of fl_softcap_exp_far_v8. */
typedef struct {
    __m256 k_hi, k_lo, cap_f, shifter;
} FlSoftcapFar;

/* The n_far logits x[base + far_c[j]] (the pass leaves them unwritten, in place
 * or not), 16 at a time: e'_c and the slopes by fl_softcap_exp_far_v8 on each
 * half, written to their places as the pass writes the others (gathered and
 * scattered: no loop over a varying count); their e'_c but the label's added
 * to sum. */
FL_TARGET_AVX512
static inline void fl_softcap_far_lanes_v16(const float *x, const int32_t *far_c,
                                            ptrdiff_t n_far, ptrdiff_t base, ptrdiff_t label,
                                            const FlSoftcapFar *k, float *exp_out,
                                            float *slope_out, __m512d *sum)
{
    __m512i label_lane = _mm512_set1_epi32(
        (size_t)(label - base) < (size_t)(16 * FL_SOFTCAP_BLOCKS) ? (int32_t)(label - base) : -1);
    for (ptrdiff_t j = 0; j < n_far; j += 16) {
        __mmask16 live = n_far - j >= 16 ? (__mmask16)0xFFFF
                                         : (__mmask16)((1u << (n_far - j)) - 1);
        __m512i at = _mm512_maskz_loadu_epi32(live, far_c + j);
        __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, at, x + base, 4);
        __m256 s0, s1;
        __m256 e0 = fl_softcap_exp_far_v8(_mm512_castps512_ps256(xv), k->k_hi, k->k_lo,
                                          k->cap_f, k->shifter, &s0);
        __m256 e1 = fl_softcap_exp_far_v8(_mm512_extractf32x8_ps(xv, 1), k->k_hi, k->k_lo,
                                          k->cap_f, k->shifter, &s1);
        __m512 e = _mm512_insertf32x8(_mm512_castps256_ps512(e0), e1, 1);
        __m512 s = _mm512_insertf32x8(_mm512_castps256_ps512(s0), s1, 1);
        if (exp_out != NULL && slope_out == NULL) {
            _mm512_mask_i32scatter_ps(exp_out + base, live, at, _mm512_mul_ps(e, s), 4);
        } else if (exp_out != NULL) {
            _mm512_mask_i32scatter_ps(exp_out + base, live, at, e, 4);
            _mm512_mask_i32scatter_ps(slope_out + base, live, at, s, 4);
        }
        e = _mm512_maskz_mov_ps(live & (__mmask16)~_mm512_cmpeq_epi32_mask(at, label_lane), e);
        *sum = _mm512_add_pd(*sum, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(e)),
                                                 _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1))));
    }
}

/* The far logits of n_blocks blocks of 16 from x + base, whose masks of far
 * lanes are masks[b]: their e'_c and slopes by fl_softcap_far_lanes_v16, their
 * e'_c but the label's added to sum. */
FL_TARGET_AVX512
static inline void fl_softcap_far_blocks_v16(const float *x, const uint16_t *masks,
                                             ptrdiff_t n_blocks, ptrdiff_t base,
                                             ptrdiff_t label, const FlSoftcapFar *k,
                                             float *exp_out, float *slope_out, __m512d *sum)
{
    int32_t far_c[FL_SOFTCAP_FAR];
    ptrdiff_t n_far = 0;
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (ptrdiff_t w = 0; w < n_blocks; w += 32) {
        __mmask32 words = n_blocks - w >= 32 ? (__mmask32)0xFFFFFFFFu
                                             : (__mmask32)((1u << (n_blocks - w)) - 1);
        __m512i m = _mm512_maskz_loadu_epi16(words, masks + w);
        uint32_t nonzero = (uint32_t)_mm512_test_epi16_mask(m, m);
        while (nonzero != 0) {
            ptrdiff_t b = w + __builtin_ctz(nonzero);
            nonzero &= nonzero - 1;
            __m512i classes = _mm512_add_epi32(lanes, _mm512_set1_epi32((int32_t)(16 * b)));
            _mm512_storeu_si512(far_c + n_far, _mm512_maskz_compress_epi32(masks[b], classes));
            n_far += __builtin_popcount(masks[b]);
            if (n_far > FL_SOFTCAP_FAR - 16) {
                fl_softcap_far_lanes_v16(x, far_c, n_far, base, label, k, exp_out, slope_out,
                                         sum);
                n_far = 0;
            }
        }
    }
    fl_softcap_far_lanes_v16(x, far_c, n_far, base, label, k, exp_out, slope_out, sum);
}

/* The 16 logits at x + c in live (none past the row: a masked load): e'_c and
 * the slopes by the near formula, stored (as the 8 lanes store them) but for
 * the lanes beyond the near bound, whose mask goes to *far_mask (they keep
 * what they held: x in place); returns the terms to sum: e'_c of the live near
 * lanes but the label's, 0 elsewhere. */
FL_TARGET_AVX512
FL_INLINE __m512 fl_softcap_mid_block_v16(const float *x, ptrdiff_t c, __mmask16 live,
                                          ptrdiff_t label, __m512 inv2, __m512 inv2_lo,
                                          __m512 near, __m512 shifter, float *exp_out,
                                          float *slope_out, uint16_t *far_mask)
{
    __m512 xv = _mm512_maskz_loadu_ps(live, x + c);
    __mmask16 far = _mm512_mask_cmp_ps_mask(live, _mm512_abs_ps(xv), near, _CMP_GT_OQ);
    *far_mask = (uint16_t)far;
    __m512 s, e = fl_softcap_exp_near_v16(xv, inv2, inv2_lo, shifter, &s);
    __mmask16 keep = live & (__mmask16)~far;
    if (exp_out != NULL && slope_out == NULL) {
        _mm512_mask_storeu_ps(exp_out + c, keep, _mm512_mul_ps(e, s));
    } else if (exp_out != NULL) {
        _mm512_mask_storeu_ps(exp_out + c, keep, e);
        _mm512_mask_storeu_ps(slope_out + c, keep, s);
    }
    if ((size_t)(label - c) < 16)
        keep &= (__mmask16)~(1u << (label - c));
    return _mm512_maskz_mov_ps(keep, e);
}

/* One step of fl_row_softcap_exp_sum_mid_float_v16: the blocks at c and c + 16
 * (lanes live0 and live1), their far masks kept, their terms summed. */
#define FL_SOFTCAP_STEP_V16(LIVE0, LIVE1)                                           \
    {                                                                               \
        __m512 e0 = fl_softcap_mid_block_v16(x, c, LIVE0, label, inv2, inv2_lo, near, sh, \
                                             exp_out, slope_out, &masks[n_blocks]); \
        __m512 e1 = fl_softcap_mid_block_v16(x, c + 16, LIVE1, label, inv2, inv2_lo, near, \
                                             sh, exp_out, slope_out,               \
                                             &masks[n_blocks + 1]);                 \
        n_blocks += 2;                                                              \
        __m512 e = _mm512_add_ps(e0, e1);                                           \
        sum0 = _mm512_add_pd(sum0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));     \
        sum1 = _mm512_add_pd(sum1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));  \
    }

FL_TARGET_AVX512
static inline double fl_row_softcap_exp_sum_mid_float_v16(const float *x, ptrdiff_t n,
                                                          ptrdiff_t label, double cap,
                                                          double capped_y, float *exp_out,
                                                          float *slope_out,
                                                          const float *next_x, float *next_out,
                                                          double *exp_scale)
{
    const double LOG2E = 1.4426950408889634;
    double k = nearbyint(capped_y * LOG2E);
    float shifter = 12582912.0f - (float)k;
    float inv2_f = (float)(1.0 / (cap * cap)), k_f = (float)(2.0 / cap);
    float inv2_lo_f = (float)(1.0 / (cap * cap) - inv2_f);
    FlSoftcapFar far_k;
    far_k.k_hi = _mm256_set1_ps(k_f);
    far_k.k_lo = _mm256_set1_ps((float)(2.0 / cap - k_f));
    far_k.cap_f = _mm256_set1_ps((float)cap);
    far_k.shifter = _mm256_set1_ps(shifter);
    const __m512 sh = _mm512_set1_ps(shifter), inv2 = _mm512_set1_ps(inv2_f);
    const __m512 inv2_lo = _mm512_set1_ps(inv2_lo_f);
    const __m512 near = _mm512_set1_ps((float)cap * FL_SOFTCAP_NEAR);
    uint16_t masks[FL_SOFTCAP_BLOCKS];
    ptrdiff_t n_blocks = 0, base = 0;
    __m512d far_sum = _mm512_setzero_pd();
    __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
    /* two blocks per step: each block's maths is one long chain of dependent
     * operations, and the pair gives the scheduler independent work; whole
     * steps first (all lanes live: plain loads and stores), then the last */
    ptrdiff_t c = 0;
    for (; c + 32 <= n; c += 32) {
        fl_prefetch_next_32(next_x, next_out, c);
        FL_SOFTCAP_STEP_V16((__mmask16)0xFFFF, (__mmask16)0xFFFF)
        if (n_blocks == FL_SOFTCAP_BLOCKS) {
            fl_softcap_far_blocks_v16(x, masks, n_blocks, base, label, &far_k, exp_out,
                                      slope_out, &far_sum);
            n_blocks = 0;
            base = c + 32;
        }
    }
    if (c < n) {
        __mmask16 live0 = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
        __mmask16 live1 = n - c <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - c - 16)) - 1);
        FL_SOFTCAP_STEP_V16(live0, live1)
    }
    fl_softcap_far_blocks_v16(x, masks, n_blocks, base, label, &far_k, exp_out, slope_out,
                              &far_sum);
    __m512d sum = _mm512_add_pd(_mm512_add_pd(sum0, sum1), far_sum);
    return fl_softcap_row_total(_mm512_castpd512_pd256(sum), _mm512_extractf64x4_pd(sum, 1), k,
                                capped_y, exp_scale);
}
#endif      /* gcc or clang */
#endif


/* Take the 16 lanes from now on when on is true and the CPU (and its OS) runs
 * AVX-512 F, DQ, VL and BW; returns whether they are taken.  (The caller sets
 * it once, before any kernel runs: the kernels only read it.) */
static inline int fl_set_wide_lanes(int on)
{
#ifdef FL_HAVE_WIDE_LANES
    fl_wide_lanes = on && fl_cpu_has_avx512();
#else
    (void)on;
#endif
    return fl_wide_lanes;
}


static inline double fl_row_softcap_exp_sum_mid_float(const float *x, ptrdiff_t n,
                                                      ptrdiff_t label, double cap,
                                                      double capped_y,
                                                      float *exp_out, float *slope_out,
                                                      const float *next_x, float *next_out,
                                                      double *exp_scale)
{
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes)
        return fl_row_softcap_exp_sum_mid_float_v16(x, n, label, cap, capped_y, exp_out, slope_out,
                                                     next_x, next_out, exp_scale);
#endif
#ifdef FL_HAVE_FAST_ROWS
    const double LOG2E = 1.4426950408889634;
    double k = nearbyint(capped_y * LOG2E);
    float shifter = 12582912.0f - (float)k;
    float inv2_f = (float)(1.0 / (cap * cap)), k_f = (float)(2.0 / cap);
    const __m256 sh = _mm256_set1_ps(shifter);
    const __m256 inv2 = _mm256_set1_ps(inv2_f);
    const __m256 inv2_lo = _mm256_set1_ps((float)(1.0 / (cap * cap) - inv2_f));
    const __m256 k_hi = _mm256_set1_ps(k_f), k_lo = _mm256_set1_ps((float)(2.0 / cap - k_f));
    const __m256 cap_f = _mm256_set1_ps((float)cap);
    __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
    ptrdiff_t c = 0;
    for (; c + 16 <= n; c += 16) {
        if (next_x != NULL)
            _mm_prefetch((const char *)(next_x + c), _MM_HINT_T0);
        if (next_out != NULL)
            __builtin_prefetch(next_out + c, 1, 3);
        __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        __m256 s0, s1, e0, e1;
        e0 = fl_softcap_exp_block_v8(x0, inv2, inv2_lo, k_hi, k_lo, cap_f, sh, &s0);
        e1 = fl_softcap_exp_block_v8(x1, inv2, inv2_lo, k_hi, k_lo, cap_f, sh, &s1);
        if (exp_out != NULL && slope_out == NULL) {
            _mm256_storeu_ps(exp_out + c, _mm256_mul_ps(e0, s0));
            _mm256_storeu_ps(exp_out + c + 8, _mm256_mul_ps(e1, s1));
        } else if (exp_out != NULL) {
            _mm256_storeu_ps(exp_out + c, e0);
            _mm256_storeu_ps(exp_out + c + 8, e1);
            _mm256_storeu_ps(slope_out + c, s0);
            _mm256_storeu_ps(slope_out + c + 8, s1);
        }
        if ((size_t)(label - c) < 16) {
            e0 = fl_without_label_v8(e0, c, label);
            e1 = fl_without_label_v8(e1, c + 8, label);
        }
        __m256 sum = _mm256_add_ps(e0, e1);
        sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(sum)));
        sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(sum, 1)));
    }
    FL_SOFTCAP_ROW_TAIL(fl_softcap_exp_block_v8, slope_out, inv2, inv2_lo, k_hi, k_lo, cap_f, sh)
    return fl_softcap_row_total(sum0, sum1, k, capped_y, exp_scale);
#else
    (void)x; (void)n; (void)label; (void)cap; (void)capped_y; (void)exp_out; (void)slope_out;
    (void)next_x; (void)next_out;
    *exp_scale = 1.0;
    return 0.0;
#endif
}

/* ------------------------------------------------------------------ binary cross-entropy */

/* Binary cross-entropy from logits for float32 data, every step in float
 * lanes (8 per AVX2 instruction, no widening but the sums and the Hessian):
 * with y = -|x| (the sign bit set: one instruction), e = exp(y) in (0, 1],
 * u = fl(1 + e), r = 1 / u (one division), and the sign bit of x choosing
 * between r and e r:
 *   sigma(x)  = r if x >= 0 else e r,      sigma(-x) = e r if x >= 0 else r,
 *   grad      = (1 - t) sigma(x) - pw t sigma(-x)       (one FMA: one rounding),
 *   loss      = c log1p(e) + lin |x|,  c = pw t + (1 - t),
 *               lin = 1 - t if x >= 0 else pw t  (lin |x| is 0 when lin is 0,
 *               also at |x| = inf: a term with a zero weight vanishes),
 *   hess      = c e r^2, in double (r refined by a Newton step: no division).
 * log1p(e) for e in [0, 1] needs no reduction and no division:
 *   log1p(e) = e + e (e Q(e)),  Q(e) ~ (log1p(e) - e) / e^2, degree 9 (fitted
 * with mpmath on [0, 1], float coefficients: 4e-9 absolute, below 0.07 ulp
 * of the result), the last step one FMA.  exp(y) for y <= 0: Cephes' split of
 * ln 2, a degree-6 polynomial (fitted likewise on [-0.36, 0.36], float
 * coefficients: 4e-9 relative), y clamped below at -104 (exp(-104) rounds to
 * 0 in float) and 2^n (n in [-150, 0]) applied as 2^(n + 64) 2^-64, so that a
 * subnormal result rounds once.  The losses are summed per lane in double,
 * eight lanes in the order of sum_span (lane k takes the elements j with
 * j % 8 == k), in the same pass. */
#define FL_BCE_LN2_HI 0.693359375f
#define FL_BCE_LN2_LO -2.12194440e-4f
#define FL_BCE_LOG2E 1.44269504088896341f
#define FL_BCE_SHIFTER 12582912.0f                          /* 1.5 * 2^23 */
#define FL_BCE_E2 0.49999991059303284f
#define FL_BCE_E3 0.1666649729013443f
#define FL_BCE_E4 0.04166881740093231f
#define FL_BCE_E5 0.008371458388864994f
#define FL_BCE_E6 0.0013801479944959283f
#define FL_BCE_Q0 -0.5f
#define FL_BCE_Q1 0.3333328068256378f
#define FL_BCE_Q2 -0.24997715651988983f
#define FL_BCE_Q3 0.19965583086013794f
#define FL_BCE_Q4 -0.16407987475395203f
#define FL_BCE_Q5 0.1315174400806427f
#define FL_BCE_Q6 -0.09333797544240952f
#define FL_BCE_Q7 0.0511840283870697f
#define FL_BCE_Q8 -0.018163567408919334f
#define FL_BCE_Q9 0.003015652298927307f

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FL_HAVE_BCE_V8 1

#define FL_DEFINE_BCE_EXP_NEG(SUFFIX, W, V, ATTR)                                          \
ATTR FL_INLINE V fl_bce_exp_neg_##SUFFIX(V y)                                              \
{                                                                                          \
    const V shifter = FL_W(W, set1_ps)(FL_BCE_SHIFTER);                                    \
    V yc = FL_W(W, max_ps)(FL_W(W, set1_ps)(-104.0f), y);                   /* NaN: y */   \
    V k = FL_W(W, fmadd_ps)(yc, FL_W(W, set1_ps)(FL_BCE_LOG2E), shifter);                  \
    V n = FL_W(W, sub_ps)(k, shifter);                                                     \
    V r = FL_W(W, fnmadd_ps)(n, FL_W(W, set1_ps)(FL_BCE_LN2_HI), yc);                      \
    r = FL_W(W, fnmadd_ps)(n, FL_W(W, set1_ps)(FL_BCE_LN2_LO), r);                         \
    V one = FL_W(W, set1_ps)(1.0f);                                                        \
    V p = FL_W(W, set1_ps)(FL_BCE_E6);                                                     \
    p = FL_W(W, fmadd_ps)(p, r, FL_W(W, set1_ps)(FL_BCE_E5));                              \
    p = FL_W(W, fmadd_ps)(p, r, FL_W(W, set1_ps)(FL_BCE_E4));                              \
    p = FL_W(W, fmadd_ps)(p, r, FL_W(W, set1_ps)(FL_BCE_E3));                              \
    p = FL_W(W, fmadd_ps)(p, r, FL_W(W, set1_ps)(FL_BCE_E2));                              \
    p = FL_W(W, fmadd_ps)(p, r, one);                                                      \
    p = FL_W(W, fmadd_ps)(p, r, one);                                                      \
    /* the low bits of k hold n: 2^(n + 64) from bits, n + 64 in [-86, 64] */              \
    V scale = FL_AS_FLOAT(W, FL_W(W, slli_epi32)(FL_W(W, add_epi32)(                       \
        FL_AS_INT(W, k), FL_W(W, set1_epi32)(127 + 64 - 0x4b400000)), 23));                \
    return FL_W(W, mul_ps)(FL_W(W, mul_ps)(p, scale), FL_W(W, set1_ps)(0x1p-64f));         \
}
FL_DEFINE_BCE_EXP_NEG(v8, 256, __m256, FL_TARGET_V3)

#define FL_DEFINE_BCE_LOG1P_UNIT(SUFFIX, W, V, ATTR)                                       \
ATTR FL_INLINE V fl_bce_log1p_unit_##SUFFIX(V e)                                           \
{                                                                                          \
    V q = FL_W(W, set1_ps)(FL_BCE_Q9);                                                     \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q8));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q7));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q6));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q5));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q4));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q3));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q2));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q1));                              \
    q = FL_W(W, fmadd_ps)(q, e, FL_W(W, set1_ps)(FL_BCE_Q0));                              \
    return FL_W(W, fmadd_ps)(e, FL_W(W, mul_ps)(e, q), e);                                 \
}
FL_DEFINE_BCE_LOG1P_UNIT(v8, 256, __m256, FL_TARGET_V3)

static inline __m256 fl_bce_load_doubles_as_floats(const double *v)
{
    return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_loadu_pd(v + 4)),
                           _mm256_cvtpd_ps(_mm256_loadu_pd(v)));
}

/* Eight elements at x, t (and weight, columns when not NULL); the outputs
 * that are not NULL are written; the loss (times the element's weight, in
 * double) is added to acc_lo (lanes 0-3) and acc_hi (lanes 4-7); *bits keeps
 * the unsigned maximum of the targets' bits (+0 for -0). */
__attribute__((always_inline))
static inline void fl_bce_block_v8(const float *x_in, const float *t_in, __m256 pw_scalar,
                                   const double *columns, const double *weight,
                                   __m256 w_scale, __m256d w_d, __m256d grad_scale_d,
                                   int unit_w, float *loss_out, float *grad_out,
                                   float *hess_out, __m256d *acc_lo, __m256d *acc_hi,
                                   __m256i *bits)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 zero = _mm256_setzero_ps();
    __m256 x = _mm256_loadu_ps(x_in);
    __m256 t = _mm256_loadu_ps(t_in);
    *bits = _mm256_max_epu32(*bits, _mm256_castps_si256(_mm256_add_ps(t, zero)));
    __m256 pw = columns ? fl_bce_load_doubles_as_floats(columns) : pw_scalar;
    __m256 y = _mm256_or_ps(x, _mm256_set1_ps(-0.0f));             /* -|x| */
    __m256 e = fl_bce_exp_neg_v8(y);
    __m256 u = _mm256_add_ps(one, e);
    __m256 r = _mm256_div_ps(one, u);
    __m256 pwt = _mm256_mul_ps(pw, t);
    __m256 nt = _mm256_sub_ps(one, t);
    __m256d w_lo = w_d, w_hi = w_d;
    if (weight) {
        w_lo = _mm256_loadu_pd(weight);
        w_hi = _mm256_loadu_pd(weight + 4);
    }
    if (grad_out) {
        __m256 er = _mm256_mul_ps(e, r);
        __m256 sigma_pos = _mm256_blendv_ps(r, er, x);              /* sign set: e r */
        __m256 sigma_neg = _mm256_blendv_ps(er, r, x);
        __m256 g = _mm256_fmsub_ps(nt, sigma_pos, _mm256_mul_ps(pwt, sigma_neg));
        __m256 scale = w_scale;
        if (weight)
            scale = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(w_hi, grad_scale_d)),
                                    _mm256_cvtpd_ps(_mm256_mul_pd(w_lo, grad_scale_d)));
        _mm256_storeu_ps(grad_out, _mm256_mul_ps(g, scale));
    }
    if (hess_out) {
        /* c e r^2 with r = 1 / (1 + e) in double: the float r plus a Newton step */
        __m256d two = _mm256_set1_pd(2.0), one_d = _mm256_set1_pd(1.0);
        __m256d e_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(e));
        __m256d e_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
        __m256d r_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(r));
        __m256d r_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1));
        r_lo = _mm256_mul_pd(r_lo, _mm256_fnmadd_pd(_mm256_add_pd(one_d, e_lo), r_lo, two));
        r_hi = _mm256_mul_pd(r_hi, _mm256_fnmadd_pd(_mm256_add_pd(one_d, e_hi), r_hi, two));
        __m256d t_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(t));
        __m256d t_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
        __m256d pw_lo, pw_hi;
        if (columns) {
            pw_lo = _mm256_loadu_pd(columns);
            pw_hi = _mm256_loadu_pd(columns + 4);
        } else {
            pw_lo = pw_hi = _mm256_cvtps_pd(_mm256_castps256_ps128(pw_scalar));
        }
        __m256d c_lo = _mm256_fmadd_pd(pw_lo, t_lo, _mm256_sub_pd(one_d, t_lo));
        __m256d c_hi = _mm256_fmadd_pd(pw_hi, t_hi, _mm256_sub_pd(one_d, t_hi));
        __m256d h_lo = _mm256_mul_pd(c_lo, _mm256_mul_pd(_mm256_mul_pd(e_lo, r_lo), r_lo));
        __m256d h_hi = _mm256_mul_pd(c_hi, _mm256_mul_pd(_mm256_mul_pd(e_hi, r_hi), r_hi));
        h_lo = _mm256_mul_pd(_mm256_mul_pd(w_lo, grad_scale_d), h_lo);
        h_hi = _mm256_mul_pd(_mm256_mul_pd(w_hi, grad_scale_d), h_hi);
        _mm256_storeu_ps(hess_out, _mm256_set_m128(_mm256_cvtpd_ps(h_hi), _mm256_cvtpd_ps(h_lo)));
    }
    __m256 log1p_e = fl_bce_log1p_unit_v8(e);
    __m256 c = _mm256_add_ps(pwt, nt);
    __m256 lin = _mm256_blendv_ps(nt, pwt, x);
    __m256 lin_y = _mm256_andnot_ps(_mm256_cmp_ps(lin, zero, _CMP_EQ_OQ), _mm256_mul_ps(lin, y));
    __m256 loss = _mm256_fmsub_ps(c, log1p_e, lin_y);               /* c log1p(e) + lin |x| */
    __m256d loss_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(loss));
    __m256d loss_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(loss, 1));
    if (weight || !unit_w) {
        loss_lo = _mm256_mul_pd(w_lo, loss_lo);
        loss_hi = _mm256_mul_pd(w_hi, loss_hi);
        if (loss_out)
            _mm256_storeu_ps(loss_out, _mm256_set_m128(_mm256_cvtpd_ps(loss_hi),
                                                       _mm256_cvtpd_ps(loss_lo)));
    } else if (loss_out) {
        _mm256_storeu_ps(loss_out, loss);
    }
    *acc_lo = _mm256_add_pd(*acc_lo, loss_lo);
    *acc_hi = _mm256_add_pd(*acc_hi, loss_hi);
}

__attribute__((always_inline))
static inline double fl_bce_span_v8(const float *x, const float *t, ptrdiff_t n,
                                    float pos_weight, const double *columns,
                                    const double *weight, double w, double grad_scale,
                                    float *loss_out, float *grad_out, float *hess_out,
                                    int *invalid)
{
    __m256 pw = _mm256_set1_ps(pos_weight);
    int unit_w = w == 1.0;
    __m256 w_scale = _mm256_set1_ps((float)(w * grad_scale));
    __m256d w_d = _mm256_set1_pd(w), grad_scale_d = _mm256_set1_pd(grad_scale);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    __m256i bits = _mm256_setzero_si256();
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8)
        fl_bce_block_v8(x + j, t + j, pw, columns ? columns + j : NULL,
                        weight ? weight + j : NULL, w_scale, w_d, grad_scale_d, unit_w,
                        loss_out ? loss_out + j : NULL, grad_out ? grad_out + j : NULL,
                        hess_out ? hess_out + j : NULL, &acc_lo, &acc_hi, &bits);
    if (j < n) {
        /* the last n - j < 8 elements through zero-padded copies (the same
         * operations: an element's results do not depend on its position) */
        float xb[8] = {0}, tb[8] = {0}, lb[8], gb[8], hb[8];
        double cb[8] = {0}, wb[8] = {0};
        ptrdiff_t m = n - j, k;
        for (k = 0; k < m; k++) {
            xb[k] = x[j + k];
            tb[k] = t[j + k];
            if (columns) cb[k] = columns[j + k];
            if (weight) wb[k] = weight[j + k];
        }
        __m256d tail_lo = _mm256_setzero_pd(), tail_hi = _mm256_setzero_pd();
        fl_bce_block_v8(xb, tb, pw, columns ? cb : NULL, weight ? wb : NULL, w_scale, w_d,
                        grad_scale_d, unit_w, lb, grad_out ? gb : NULL, hess_out ? hb : NULL,
                        &tail_lo, &tail_hi, &bits);
        double lanes[8];
        _mm256_storeu_pd(lanes, tail_lo);
        _mm256_storeu_pd(lanes + 4, tail_hi);
        for (k = m; k < 8; k++)
            lanes[k] = 0.0;
        acc_lo = _mm256_add_pd(acc_lo, _mm256_loadu_pd(lanes));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_loadu_pd(lanes + 4));
        for (k = 0; k < m; k++) {
            if (loss_out) loss_out[j + k] = lb[k];
            if (grad_out) grad_out[j + k] = gb[k];
            if (hess_out) hess_out[j + k] = hb[k];
        }
    }
    /* targets in [0, 1] (+0 for -0): bits at most those of 1.0f, unsigned */
    __m256i over = _mm256_cmpgt_epi32(_mm256_xor_si256(bits, _mm256_set1_epi32(INT32_MIN)),
                                      _mm256_set1_epi32((int32_t)(0x3f800000u ^ 0x80000000u)));
    *invalid = !_mm256_testz_si256(over, over);
    __m256d s = _mm256_add_pd(acc_lo, acc_hi);        /* lanes k + (k + 4) */
    double lanes[4];
    _mm256_storeu_pd(lanes, s);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
#endif

/* The same maths one element at a time (the baseline build's loop, which gcc
 * vectorises): the loss (times nothing) and the unscaled gradient; e and r for
 * the Hessian. */
static inline float fl_bce_element_float(float x, float t, float pw, float *grad,
                                         float *e_out, float *r_out)
{
    float y = fl_from_bits32(fl_bits32(x) | (int32_t)0x80000000);  /* -|x| */
    float yc = y < -104.0f ? -104.0f : y;                             /* NaN: y */
    float k = yc * FL_BCE_LOG2E + FL_BCE_SHIFTER;
    float n = k - FL_BCE_SHIFTER;
    float r = (yc - n * FL_BCE_LN2_HI) - n * FL_BCE_LN2_LO;
    float p = FL_BCE_E6;
    p = p * r + FL_BCE_E5;
    p = p * r + FL_BCE_E4;
    p = p * r + FL_BCE_E3;
    p = p * r + FL_BCE_E2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t i = fl_bits32(k) + (127 + 64 - 0x4b400000);
    float e = (p * fl_from_bits32((int32_t)((uint32_t)i << 23))) * 0x1p-64f;
    float inv = 1.0f / (1.0f + e);
    int negative = fl_bits32(x) < 0;
    float er = e * inv;
    float sigma_pos = negative ? er : inv;
    float sigma_neg = negative ? inv : er;
    float pwt = pw * t;
    float nt = 1.0f - t;
    *grad = nt * sigma_pos - pwt * sigma_neg;
    float q = FL_BCE_Q9;
    q = q * e + FL_BCE_Q8;
    q = q * e + FL_BCE_Q7;
    q = q * e + FL_BCE_Q6;
    q = q * e + FL_BCE_Q5;
    q = q * e + FL_BCE_Q4;
    q = q * e + FL_BCE_Q3;
    q = q * e + FL_BCE_Q2;
    q = q * e + FL_BCE_Q1;
    q = q * e + FL_BCE_Q0;
    float log1p_e = e + e * (e * q);
    float c = pwt + nt;
    float lin = negative ? pwt : nt;
    float lin_y = lin == 0.0f ? 0.0f : lin * y;
    *e_out = e;
    *r_out = inv;
    return c * log1p_e - lin_y;
}

/* Binary cross-entropy of n float32 elements (logits x, targets t) in float
 * lanes: returns the sum of w_j loss_j in double (w_j = weight[j], or w when
 * weight is NULL); writes, where not NULL, loss_out[j] = w_j loss_j,
 * grad_out[j] = fl(w_j grad_scale) d loss / dx, hess_out[j] = w_j grad_scale
 * d^2 loss / dx^2 (rounded once), with pos_weight (or (float)columns[j] when
 * columns is not NULL) the weight of the positive term; *invalid = 1 when a
 * target is outside [0, 1] or NaN, else 0.  Every output element is written
 * after its inputs are read (out may be x).  The caller checks that the
 * weights and scales are float coefficients (0, or within [1e-30, 1e30]). */
static inline double fl_bce_span_float(const float *x, const float *t, ptrdiff_t n,
                                       float pos_weight, const double *columns,
                                       const double *weight, double w, double grad_scale,
                                       float *loss_out, float *grad_out, float *hess_out,
                                       int *invalid)
{
#ifdef FL_HAVE_BCE_V8
    /* one loop per case, so that each is compiled without the others' tests */
    if (!weight && !columns && !hess_out) {
        if (!loss_out)
            return fl_bce_span_v8(x, t, n, pos_weight, NULL, NULL, w, grad_scale, NULL,
                                  grad_out, NULL, invalid);
        return fl_bce_span_v8(x, t, n, pos_weight, NULL, NULL, w, grad_scale, loss_out,
                              grad_out, NULL, invalid);
    }
    return fl_bce_span_v8(x, t, n, pos_weight, columns, weight, w, grad_scale, loss_out,
                          grad_out, hess_out, invalid);
#else
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float scale_w = (float)(w * grad_scale);
    int bad = 0;
    ptrdiff_t j;
    for (j = 0; j < n; j++) {
        float grad, e, inv;
        float tj = t[j];
        float pw = columns ? (float)columns[j] : pos_weight;
        double wj = weight ? weight[j] : w;
        bad |= !(tj >= 0.0f && tj <= 1.0f);
        float loss = fl_bce_element_float(x[j], tj, pw, &grad, &e, &inv);
        double weighted = wj * (double)loss;
        acc[j & 7] += weighted;
        if (loss_out)
            loss_out[j] = (weight || w != 1.0) ? (float)weighted : loss;
        if (hess_out) {
            double inv_d = 1.0 / (1.0 + (double)e);
            double c = (double)pw * (double)tj + (1.0 - (double)tj);
            hess_out[j] = (float)((wj * grad_scale) * (c * ((double)e * inv_d * inv_d)));
        }
        if (grad_out)
            grad_out[j] = grad * (weight ? (float)(wj * grad_scale) : scale_w);
    }
    *invalid = bad;
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
#endif
}

/* Binary cross-entropy of n float64 elements in 4 double lanes (x86-64-v3
 * build): binary_cross_entropy_element's double maths, its special cases
 * decided by selects:
 *   e = exp(-|x|) (fl_exp's reduction and polynomial; 2^n, n in [-1077, 0],
 *       applied as 2^(n + 600) 2^-600, so that a subnormal result rounds once),
 *   inv = 1 / (1 + e), sigma(x) = inv if x >= 0 else e inv (sigma(-x) the other),
 *   log1p(e) for e in [0, 1] (fl_log1p's reduction with u = fl(1 + e) in
 *       [1, 2], its correction (e - (u - 1)) inv),
 *   loss = xmul(pw t, max(-x, 0) + log1p(e)) + xmul(1 - t, max(x, 0) + log1p(e)),
 *   grad = (1 - t) sigma(x) - pw t sigma(-x),  hess = (pw t + 1 - t) e inv^2;
 * the weighted losses summed in eight lanes in sum_span's order.  Returns 0
 * in the baseline build (the generic loops then run); else 1, with *total,
 * the outputs and *invalid as fl_bce_span_float's (columns[j], when not NULL,
 * the positive weight of element j; outputs may be inputs). */
#ifdef FL_HAVE_BCE_V8
/* exp(a) for a <= 0 or NaN, 4 lanes */
FL_INLINE __m256d fl_exp_nonpositive_v4d(__m256d a)
{
    const __m256d SH = _mm256_set1_pd(6755399441055744.0);        /* 1.5 * 2^52 */
    __m256d ac = _mm256_max_pd(_mm256_set1_pd(-746.0), a);        /* NaN: a */
    __m256d t = _mm256_fmadd_pd(ac, _mm256_set1_pd(1.4426950408889634), SH);
    __m256d n = _mm256_sub_pd(t, SH);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), ac);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    __m256d p = fl_exp_taylor_tail_v4d(r);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    /* the low bits of t hold n: 2^(n + 600) from bits */
    __m256i bits = _mm256_add_epi64(_mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(SH)),
                                    _mm256_set1_epi64x(1023 + 600));
    __m256d scale = _mm256_castsi256_pd(_mm256_slli_epi64(bits, 52));
    return _mm256_mul_pd(_mm256_mul_pd(p, scale), _mm256_set1_pd(0x1p-600));
}

/* log1p(e) for e in [0, 1] or NaN, given inv_u = 1 / fl(1 + e), 4 lanes */
FL_INLINE __m256d fl_log1p_unit_v4d(__m256d e, __m256d inv_u)
{
    const __m256d one = _mm256_set1_pd(1.0);
    __m256d u = _mm256_add_pd(one, e);
    __m256d c = _mm256_mul_pd(_mm256_sub_pd(e, _mm256_sub_pd(u, one)), inv_u);
    __m256d big = _mm256_cmp_pd(u, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    __m256d k = _mm256_and_pd(big, one);
    __m256d f = _mm256_sub_pd(_mm256_blendv_pd(u, _mm256_mul_pd(u, _mm256_set1_pd(0.5)), big), one);
    __m256d s = _mm256_div_pd(f, _mm256_add_pd(_mm256_set1_pd(2.0), f));
    __m256d z = _mm256_mul_pd(s, s), w = _mm256_mul_pd(z, z);
    __m256d t1 = _mm256_fmadd_pd(w, _mm256_set1_pd(1.531383769920937332e-01),
                                 _mm256_set1_pd(2.222219843214978396e-01));
    t1 = _mm256_mul_pd(w, _mm256_fmadd_pd(w, t1, _mm256_set1_pd(3.999999999940941908e-01)));
    __m256d t2 = _mm256_fmadd_pd(w, _mm256_set1_pd(1.479819860511658591e-01),
                                 _mm256_set1_pd(1.818357216161805012e-01));
    t2 = _mm256_fmadd_pd(w, t2, _mm256_set1_pd(2.857142874366239149e-01));
    t2 = _mm256_mul_pd(z, _mm256_fmadd_pd(w, t2, _mm256_set1_pd(6.666666666666735130e-01)));
    __m256d R = _mm256_add_pd(t2, t1);
    __m256d hfsq = _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), f), f);
    __m256d low = _mm256_fmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), c);
    __m256d x = _mm256_sub_pd(_mm256_sub_pd(hfsq, _mm256_fmadd_pd(s, _mm256_add_pd(hfsq, R), low)), f);
    return _mm256_fmsub_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), x);
}

/* a b, 0 where a = 0 and b = +inf (a term with a zero weight vanishes; b >= 0 or NaN) */
FL_INLINE __m256d fl_xmul_v4d(__m256d a, __m256d b)
{
    __m256d vanish = _mm256_and_pd(_mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_EQ_OQ),
                                   _mm256_cmp_pd(b, _mm256_set1_pd(1.0 / 0.0), _CMP_EQ_OQ));
    return _mm256_andnot_pd(vanish, _mm256_mul_pd(a, b));
}

/* Four elements at j (only the lanes of live unless full) */
FL_INLINE void fl_bce_v4d(const double *x_in, const double *t_in, const double *columns,
                          const double *weight, __m256d pw_all, __m256d w_all,
                          __m256d grad_scale, const int full, __m256i live, double *loss_out,
                          double *grad_out, double *hess_out, __m256d *acc, __m256d *bad)
{
    const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
#define FL_LOAD(p) (full ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, live))
#define FL_STORE(p, v) (full ? _mm256_storeu_pd(p, v) : _mm256_maskstore_pd(p, live, v))
    __m256d x = FL_LOAD(x_in), t = FL_LOAD(t_in);
    __m256d pw = columns ? FL_LOAD(columns) : pw_all;
    __m256d w = weight ? FL_LOAD(weight) : w_all;
    *bad = _mm256_or_pd(*bad, _mm256_andnot_pd(
        _mm256_and_pd(_mm256_cmp_pd(t, zero, _CMP_GE_OQ), _mm256_cmp_pd(t, one, _CMP_LE_OQ)),
        _mm256_castsi256_pd(live)));
    __m256d e = fl_exp_nonpositive_v4d(_mm256_or_pd(x, _mm256_set1_pd(-0.0)));   /* exp(-|x|) */
    __m256d inv = _mm256_div_pd(one, _mm256_add_pd(one, e));
    __m256d pwt = _mm256_mul_pd(pw, t), nt = _mm256_sub_pd(one, t);
    __m256d log1p_e = fl_log1p_unit_v4d(e, inv);
    __m256d pos = _mm256_cmp_pd(x, zero, _CMP_GE_OQ);
    __m256d x_pos = _mm256_andnot_pd(_mm256_cmp_pd(x, zero, _CMP_LE_OQ), x);   /* max(x, 0), NaN kept */
    __m256d minus_x = _mm256_sub_pd(zero, x);
    __m256d x_neg = _mm256_andnot_pd(_mm256_cmp_pd(minus_x, zero, _CMP_LE_OQ), minus_x);
    __m256d loss = _mm256_add_pd(fl_xmul_v4d(pwt, _mm256_add_pd(x_neg, log1p_e)),
                                 fl_xmul_v4d(nt, _mm256_add_pd(x_pos, log1p_e)));
    __m256d weighted = _mm256_mul_pd(w, loss);
    if (!full)
        weighted = _mm256_and_pd(weighted, _mm256_castsi256_pd(live));
    *acc = _mm256_add_pd(*acc, weighted);
    __m256d scale = _mm256_mul_pd(w, grad_scale);
    if (hess_out) {
        __m256d h = _mm256_mul_pd(_mm256_add_pd(pwt, nt), _mm256_mul_pd(_mm256_mul_pd(e, inv), inv));
        FL_STORE(hess_out, _mm256_mul_pd(scale, h));
    }
    if (grad_out) {
        __m256d er = _mm256_mul_pd(e, inv);
        __m256d sigma_pos = _mm256_blendv_pd(er, inv, pos), sigma_neg = _mm256_blendv_pd(inv, er, pos);
        __m256d g = _mm256_fmsub_pd(nt, sigma_pos, _mm256_mul_pd(pwt, sigma_neg));
        FL_STORE(grad_out, _mm256_mul_pd(scale, g));
    }
    if (loss_out)
        FL_STORE(loss_out, weighted);
#undef FL_LOAD
#undef FL_STORE
}
#endif

static inline int fl_bce_span_double(const double *x, const double *t, ptrdiff_t n,
                                     double pos_weight, const double *columns,
                                     const double *weight, double w, double grad_scale,
                                     double *loss_out, double *grad_out, double *hess_out,
                                     double *total, int *invalid)
{
#ifdef FL_HAVE_BCE_V8
    const __m256d pw = _mm256_set1_pd(pos_weight), wv = _mm256_set1_pd(w);
    const __m256d gs = _mm256_set1_pd(grad_scale);
    const __m256i all = _mm256_set1_epi64x(-1);
    __m256d acc[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()}, bad = _mm256_setzero_pd();
    ptrdiff_t j = 0;
#define FL_AT(p, k) ((p) ? (p) + (k) : NULL)
    for (; j + 8 <= n; j += 8)
        for (int h = 0; h < 2; h++)
            fl_bce_v4d(x + j + 4 * h, t + j + 4 * h, FL_AT(columns, j + 4 * h),
                       FL_AT(weight, j + 4 * h), pw, wv, gs, 1, all, FL_AT(loss_out, j + 4 * h),
                       FL_AT(grad_out, j + 4 * h), FL_AT(hess_out, j + 4 * h), &acc[h], &bad);
    /* the last n - j < 8 through masks (sum_span adds them to lanes 0, 1, ...) */
    for (int h = 0; j + 4 * h < n; h++) {
        ptrdiff_t k = j + 4 * h;
        __m256i live = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - k), _mm256_setr_epi64x(0, 1, 2, 3));
        fl_bce_v4d(x + k, t + k, FL_AT(columns, k), FL_AT(weight, k), pw, wv, gs, 0, live,
                   FL_AT(loss_out, k), FL_AT(grad_out, k), FL_AT(hess_out, k), &acc[h], &bad);
    }
#undef FL_AT
    *invalid = _mm256_movemask_pd(bad) != 0;
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(acc[0], acc[1]));      /* lanes k + (k + 4) */
    *total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    return 1;
#else
    (void)x; (void)t; (void)n; (void)pos_weight; (void)columns; (void)weight; (void)w;
    (void)grad_scale; (void)loss_out; (void)grad_out; (void)hess_out; (void)total; (void)invalid;
    return 0;
#endif
}

/* ------------------------------------------------------------------ the simple losses */

/* mse, huber, hinge and squared_hinge of n float32 elements in one pass, the
 * weighted losses summed per lane in double in the same pass (lane k takes
 * the elements j with j % 8 == k, combined as sum_span does), for spans that
 * share one weight w (no Hessian):
 *   FL_MSE            loss = (p - t)^2 and grad = 2 (p - t) from the exact
 *                     double difference, each rounded once (the double loop's
 *                     operations: the same results);
 *   FL_HUBER          huber_element_float's float maths (delta a float);
 *   FL_HINGE, FL_SQUARED_HINGE  hinge_element_float's and
 *                     squared_hinge_element_float's (margin a float), with
 *                     their target checks: *seen gets bit 1 for a target 0,
 *                     2 for -1 and 4 for any other than -1, 0 and 1;
 *   FL_SMOOTH_L1      smooth_l1_element_float's float maths (beta a float,
 *                     0 for l1; 1 / beta rounded to float): huber's with the
 *                     quadratic zone's loss and gradient times 1 / beta, and
 *                     sign(r) beyond it.
 *   FL_L1             l1_element_float: loss = |p - t| from the exact double
 *                     difference, grad = sign(fl(p - t)) in float (0 at 0,
 *                     NaN for NaN);
 *   FL_PINBALL        pinball_element_float for the quantile q = param_d:
 *                     r = t - p exact in double, loss = q r if r >= 0 else
 *                     (q - 1) r in double, grad = fl(-q) if fl(t - p) >= 0,
 *                     fl(1 - q) if below 0, NaN for NaN.
 * grad_out[j] = fl(w grad_scale) grad (mse: fl(w grad_scale 2 r)),
 * loss_out[j] = fl(w loss); out may be an input (read before written). */
enum { FL_MSE = 0, FL_HUBER = 1, FL_HINGE = 2, FL_SQUARED_HINGE = 3, FL_SMOOTH_L1 = 4,
       FL_L1 = 5, FL_PINBALL = 6 };

#ifdef FL_HAVE_BCE_V8
__attribute__((always_inline))
static inline void fl_simple_block_v8(const int kind, const float *p_in, const float *t_in,
                                      float param, double param_d, float inv_param,
                                      float sign_scale, __m256 scale,
                                      __m256d scale_d,
                                      __m256d w_d, float *loss_out, float *grad_out,
                                      __m256d *acc_lo, __m256d *acc_hi, __m256 *zero_seen,
                                      __m256 *minus_seen, __m256 *other_seen)
{
    __m256d loss_lo, loss_hi;
    if (kind == FL_L1 || kind == FL_PINBALL) {
        /* the loss from the exact double difference (rounded once), the gradient
         * from the sign of its float rounding, whose sign is the exact one's */
        __m256 p = _mm256_loadu_ps(p_in), t = _mm256_loadu_ps(t_in);
        __m256d p_lo = _mm256_cvtps_pd(_mm_loadu_ps(p_in));
        __m256d p_hi = _mm256_cvtps_pd(_mm_loadu_ps(p_in + 4));
        __m256d t_lo = _mm256_cvtps_pd(_mm_loadu_ps(t_in));
        __m256d t_hi = _mm256_cvtps_pd(_mm_loadu_ps(t_in + 4));
        __m256 zero = _mm256_setzero_ps(), grad;
        if (kind == FL_L1) {
            const __m256d magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
            loss_lo = _mm256_and_pd(magnitude, _mm256_sub_pd(p_lo, t_lo));
            loss_hi = _mm256_and_pd(magnitude, _mm256_sub_pd(p_hi, t_hi));
            __m256 r = _mm256_sub_ps(p, t);
            __m256 unit = _mm256_or_ps(_mm256_and_ps(r, _mm256_set1_ps(-0.0f)),
                                       _mm256_set1_ps(1.0f));       /* copysign(1, r) */
            grad = _mm256_blendv_ps(r, unit, _mm256_cmp_ps(r, zero, _CMP_NEQ_OQ));
        } else {
            __m256d q = _mm256_set1_pd(param_d), below = _mm256_set1_pd(param_d - 1.0);
            __m256d r_lo = _mm256_sub_pd(t_lo, p_lo), r_hi = _mm256_sub_pd(t_hi, p_hi);
            /* q r >= (q - 1) r exactly where r >= 0; maxpd returns its second
             * operand, q r, for a NaN and for two zeros (the sign of r's) */
            loss_lo = _mm256_max_pd(_mm256_mul_pd(below, r_lo), _mm256_mul_pd(q, r_lo));
            loss_hi = _mm256_max_pd(_mm256_mul_pd(below, r_hi), _mm256_mul_pd(q, r_hi));
            __m256 r = _mm256_sub_ps(t, p);
            grad = _mm256_blendv_ps(r, _mm256_set1_ps((float)(-(param_d - 1.0))),
                                    _mm256_cmp_ps(r, zero, _CMP_LT_OQ));
            grad = _mm256_blendv_ps(grad, _mm256_set1_ps((float)-param_d),
                                    _mm256_cmp_ps(r, zero, _CMP_GE_OQ));
        }
        if (grad_out)
            _mm256_storeu_ps(grad_out, _mm256_mul_ps(scale, grad));
    } else if (kind == FL_MSE) {
        __m256d r_lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p_in)),
                                     _mm256_cvtps_pd(_mm_loadu_ps(t_in)));
        __m256d r_hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p_in + 4)),
                                     _mm256_cvtps_pd(_mm_loadu_ps(t_in + 4)));
        loss_lo = _mm256_mul_pd(r_lo, r_lo);
        loss_hi = _mm256_mul_pd(r_hi, r_hi);
        if (grad_out) {
            __m256d two = _mm256_set1_pd(2.0);
            __m128 g_lo = _mm256_cvtpd_ps(_mm256_mul_pd(scale_d, _mm256_mul_pd(two, r_lo)));
            __m128 g_hi = _mm256_cvtpd_ps(_mm256_mul_pd(scale_d, _mm256_mul_pd(two, r_hi)));
            _mm256_storeu_ps(grad_out, _mm256_set_m128(g_hi, g_lo));
        }
    } else {
        __m256 p = _mm256_loadu_ps(p_in);
        __m256 t = _mm256_loadu_ps(t_in);
        __m256 loss, grad;
        if (kind == FL_HUBER) {
            __m256 delta = _mm256_set1_ps(param);
            __m256 r = _mm256_sub_ps(p, t);
            __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), r);
            __m256 near = _mm256_cmp_ps(a, delta, _CMP_LE_OQ);         /* NaN: far */
            __m256 quadratic = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), r), r);
            __m256 linear = _mm256_mul_ps(delta, _mm256_sub_ps(a, _mm256_set1_ps(0.5f * param)));
            loss = _mm256_blendv_ps(linear, quadratic, near);
            /* max and min return their second operand at NaN: r */
            grad = _mm256_min_ps(delta, _mm256_max_ps(_mm256_set1_ps(-param), r));
        } else if (kind == FL_SMOOTH_L1) {
            /* near (|r| < beta, never for beta = 0): q = r / beta (times
             * fl(1 / beta)), loss 0.5 r q; else |r| - beta / 2 and sign(r) =
             * min(1, max(-1, sign_scale q)): beyond +-1 for a nonzero r (|q|
             * >= 1 - 2^-24 there, sign_scale 2; for beta = 0 q = r 2^126,
             * sign_scale 2^126), 0 and NaN pass (max and min return their
             * second operand at NaN) */
            __m256 beta = _mm256_set1_ps(param);
            __m256 r = _mm256_sub_ps(p, t);
            __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), r);
            __m256 near = _mm256_cmp_ps(a, beta, _CMP_LT_OQ);           /* NaN: far */
            __m256 q = _mm256_mul_ps(r, _mm256_set1_ps(inv_param));
            __m256 quadratic = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), r), q);
            __m256 linear = _mm256_sub_ps(a, _mm256_set1_ps(0.5f * param));
            loss = _mm256_blendv_ps(linear, quadratic, near);
            __m256 sign = _mm256_min_ps(_mm256_set1_ps(1.0f), _mm256_max_ps(
                _mm256_set1_ps(-1.0f), _mm256_mul_ps(q, _mm256_set1_ps(sign_scale))));
            grad = _mm256_blendv_ps(sign, q, near);
        } else {
            __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
            __m256 minus_one = _mm256_set1_ps(-1.0f);
            __m256 is_zero = _mm256_cmp_ps(t, zero, _CMP_EQ_OQ);
            __m256 is_minus = _mm256_cmp_ps(t, minus_one, _CMP_EQ_OQ);
            *zero_seen = _mm256_or_ps(*zero_seen, is_zero);
            *minus_seen = _mm256_or_ps(*minus_seen, is_minus);
            *other_seen = _mm256_or_ps(*other_seen, _mm256_cmp_ps(
                _mm256_or_ps(_mm256_or_ps(is_zero, is_minus), _mm256_cmp_ps(t, one, _CMP_EQ_OQ)),
                zero, _CMP_EQ_OQ));                                     /* no bit set */
            __m256 tt = _mm256_blendv_ps(t, minus_one, is_zero);        /* 0 reads as -1 */
            __m256 z = _mm256_fnmadd_ps(tt, p, _mm256_set1_ps(param));  /* margin - t s */
            __m256 positive = _mm256_cmp_ps(z, zero, _CMP_GT_OQ);
            __m256 nonpositive = _mm256_cmp_ps(z, zero, _CMP_LE_OQ);
            if (kind == FL_HINGE) {
                loss = _mm256_andnot_ps(nonpositive, z);                /* NaN stays */
                grad = _mm256_andnot_ps(nonpositive,
                                        _mm256_blendv_ps(z, _mm256_xor_ps(tt, _mm256_set1_ps(-0.0f)),
                                                         positive));
            } else {
                __m256 zp = _mm256_andnot_ps(nonpositive, z);
                loss = _mm256_mul_ps(zp, zp);
                grad = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), tt), zp);
            }
        }
        if (grad_out)
            _mm256_storeu_ps(grad_out, _mm256_mul_ps(scale, grad));
        loss_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(loss));
        loss_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(loss, 1));
    }
    loss_lo = _mm256_mul_pd(w_d, loss_lo);
    loss_hi = _mm256_mul_pd(w_d, loss_hi);
    if (loss_out)
        _mm256_storeu_ps(loss_out, _mm256_set_m128(_mm256_cvtpd_ps(loss_hi),
                                                   _mm256_cvtpd_ps(loss_lo)));
    *acc_lo = _mm256_add_pd(*acc_lo, loss_lo);
    *acc_hi = _mm256_add_pd(*acc_hi, loss_hi);
}

__attribute__((always_inline))
static inline double fl_simple_span_v8(const int kind, const float *p, const float *t,
                                       ptrdiff_t n, float param, double param_d, double w,
                                       double grad_scale, float *loss_out, float *grad_out,
                                       int *seen)
{
    __m256 scale = _mm256_set1_ps((float)(w * grad_scale));
    __m256d scale_d = _mm256_set1_pd(w * grad_scale), w_d = _mm256_set1_pd(w);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    __m256 zero_seen = _mm256_setzero_ps(), minus_seen = zero_seen, other_seen = zero_seen;
    /* smooth_l1's fl(1 / beta) and the scale of its sign (see above) */
    float inv_param = param > 0.0f ? (float)(1.0 / (double)param) : 0x1p126f;
    float sign_scale = param > 0.0f ? 2.0f : 0x1p126f;
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8)
        fl_simple_block_v8(kind, p + j, t + j, param, param_d, inv_param, sign_scale, scale,
                           scale_d, w_d,
                           loss_out ? loss_out + j : NULL, grad_out ? grad_out + j : NULL,
                           &acc_lo, &acc_hi, &zero_seen, &minus_seen, &other_seen);
    if (j < n) {
        /* the tail through padded copies (a target 1 is valid for every kind) */
        float pb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tb[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        float lb[8], gb[8];
        ptrdiff_t m = n - j, k;
        for (k = 0; k < m; k++) {
            pb[k] = p[j + k];
            tb[k] = t[j + k];
        }
        __m256d tail_lo = _mm256_setzero_pd(), tail_hi = _mm256_setzero_pd();
        fl_simple_block_v8(kind, pb, tb, param, param_d, inv_param, sign_scale, scale, scale_d,
                           w_d, lb,
                           grad_out ? gb : NULL, &tail_lo, &tail_hi, &zero_seen, &minus_seen,
                           &other_seen);
        double lanes[8];
        _mm256_storeu_pd(lanes, tail_lo);
        _mm256_storeu_pd(lanes + 4, tail_hi);
        for (k = m; k < 8; k++)
            lanes[k] = 0.0;
        acc_lo = _mm256_add_pd(acc_lo, _mm256_loadu_pd(lanes));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_loadu_pd(lanes + 4));
        for (k = 0; k < m; k++) {
            if (loss_out) loss_out[j + k] = lb[k];
            if (grad_out) grad_out[j + k] = gb[k];
        }
    }
    if (kind == FL_HINGE || kind == FL_SQUARED_HINGE)
        *seen |= (_mm256_movemask_ps(zero_seen) ? 1 : 0) | (_mm256_movemask_ps(minus_seen) ? 2 : 0)
                 | (_mm256_movemask_ps(other_seen) ? 4 : 0);
    __m256d s = _mm256_add_pd(acc_lo, acc_hi);
    double lanes[4];
    _mm256_storeu_pd(lanes, s);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
#endif

/* 1 when fl_simple_span_float has its float-lane loops (x86-64-v3), else 0: the
 * baseline build keeps the template's loops for these losses. */
static inline int fl_simple_span_built(void)
{
#ifdef FL_HAVE_BCE_V8
    return 1;
#else
    return 0;
#endif
}

/* The loss kind's span (see above); only where fl_simple_span_built(). */
static inline double fl_simple_span_float(int kind, const float *p, const float *t, ptrdiff_t n,
                                          float param, double param_d, double w,
                                          double grad_scale, float *loss_out, float *grad_out,
                                          int *seen)
{
#ifdef FL_HAVE_BCE_V8
    switch (kind) {
    case FL_MSE:
        if (!loss_out)
            return fl_simple_span_v8(FL_MSE, p, t, n, param, param_d, w, grad_scale, NULL,
                                     grad_out, seen);
        return fl_simple_span_v8(FL_MSE, p, t, n, param, param_d, w, grad_scale, loss_out,
                                 grad_out, seen);
    case FL_HUBER:
        return fl_simple_span_v8(FL_HUBER, p, t, n, param, param_d, w, grad_scale, loss_out,
                                 grad_out, seen);
    case FL_HINGE:
        return fl_simple_span_v8(FL_HINGE, p, t, n, param, param_d, w, grad_scale, loss_out,
                                 grad_out, seen);
    case FL_SMOOTH_L1:
        return fl_simple_span_v8(FL_SMOOTH_L1, p, t, n, param, param_d, w, grad_scale,
                                 loss_out, grad_out, seen);
    case FL_L1:
        return fl_simple_span_v8(FL_L1, p, t, n, param, param_d, w, grad_scale, loss_out,
                                 grad_out, seen);
    case FL_PINBALL:
        return fl_simple_span_v8(FL_PINBALL, p, t, n, param, param_d, w, grad_scale, loss_out,
                                 grad_out, seen);
    default:
        return fl_simple_span_v8(FL_SQUARED_HINGE, p, t, n, param, param_d, w, grad_scale,
                                 loss_out, grad_out, seen);
    }
#else
    (void)kind; (void)p; (void)t; (void)n; (void)param; (void)param_d; (void)w; (void)grad_scale;
    (void)loss_out; (void)grad_out; (void)seen;
    return 0.0;
#endif
}

/* e[c] = (a e[c] - b) slope[c] in float (a and b well inside float's range). */
static inline void fl_row_affine_slope_float1(float *e, const float *slope, ptrdiff_t n,
                                              float a, float b)
{
    for (ptrdiff_t c = 0; c < n; c++)
        e[c] = (a * e[c] - b) * slope[c];
}


/* ------------------------------------------------------------------ float8 <-> double4 */

/* The low and the high four lanes of eight floats widened to double (exact),
 * and two double4 narrowed (each lane rounded once) and joined into eight
 * floats: shared by the float-lane spans below and _small_rows.h. */
#ifdef FL_HAVE_FAST_ROWS
static inline __m256d fl_lo_pd(__m256 v)
{
    return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}

static inline __m256d fl_hi_pd(__m256 v)
{
    return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

static inline __m256 fl_join_ps(__m256d lo, __m256d hi)
{
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}
#endif


/* ------------------------------------------------------------------ sigmoid focal loss, log_cosh */

/* Whole float32 spans of sigmoid_focal_loss and log_cosh in AVX2 lanes
 * (x86-64-v3 build only: elsewhere fl_focal_span_built() and
 * fl_log_cosh_span_built() are 0 and the kernels keep their element loops).
 * Both sum the losses per lane in double as they compute them, lane k taking the
 * elements j with j % 8 == k, combined in sum_span's order (log_cosh sums w
 * loss_j, the focal loss sums loss_j and multiplies the total by w); both
 * take one weight w for the span and write grad_out[j] = fl(w grad_scale)
 * grad and loss_out[j] = fl(w loss) where not NULL; every output element is
 * written after its inputs are read (an output may be an input). */
#if defined(FL_HAVE_FAST_ROWS) && defined(FL_HAVE_BCE_V8)
#define FL_HAVE_FOCAL_V8 1

/* The double half of the focal loss for four elements, what the loss needs
 * beyond float (x, a = |x|, t, e = exp(-min(a, 104)) to 2^-27.6 and log1p(e)
 * from the float lanes, in double): linear = 1 - t if x >= 0 else t (also the
 * NaN rule of sigmoid_focal_loss_element_float), n = linear + (1 - linear) e,
 * q = n / (1 + e) (one division, where the baseline's loop refines a float
 * inverse by a Newton step: both to about 2^-46, far below float's needs),
 * ce = (0 if linear == 0 else linear a) + log1p(e) (the product exact, one
 * rounding), a_t = slope t + intercept; returns a_t ce q^gamma (variant 0, 1,
 * 2), with q, ce and a_t in *q, *ce, *a_t. */
#define FL_DEFINE_FOCAL_HALF(SUFFIX, W, VD, ATTR)                                          \
ATTR FL_INLINE VD fl_focal_half_##SUFFIX(const int variant, VD x, VD a, VD t, VD e,        \
                                         VD log1p_e, VD alpha_slope, VD alpha_intercept,   \
                                         VD *q, VD *ce, VD *a_t)                           \
{                                                                                          \
    const VD one = FL_W(W, set1_pd)(1.0);                                                  \
    FL_MASK_PD(W) ge = FL_CMP_PD(W)(x, FL_W(W, setzero_pd)(), _CMP_GE_OQ);                 \
    /* t + (1 - 2t) where x >= 0, and 1 - linear: exact sums, no blends */                 \
    VD flip = FL_W(W, fnmadd_pd)(FL_W(W, set1_pd)(2.0), t, one);                           \
    VD linear = FL_W(W, add_pd)(t, FL_KEEP_PD(W)(ge, flip));                               \
    VD other = FL_W(W, sub_pd)(one, linear);                                               \
    VD power = one;                                                                        \
    if (variant > 0) {                                                                     \
        *q = FL_W(W, div_pd)(FL_W(W, fmadd_pd)(other, e, linear), FL_W(W, add_pd)(one, e)); \
        power = variant == 1 ? *q : FL_W(W, mul_pd)(*q, *q);                               \
    }                                                                                      \
    FL_MASK_PD(W) some = FL_CMP_PD(W)(linear, FL_W(W, setzero_pd)(), _CMP_NEQ_UQ);         \
    *ce = FL_W(W, fmadd_pd)(linear, FL_KEEP_PD(W)(some, a), log1p_e);                      \
    *a_t = FL_W(W, fmadd_pd)(alpha_slope, t, alpha_intercept);                             \
    return FL_W(W, mul_pd)(FL_W(W, mul_pd)(*a_t, *ce), power);                             \
}
FL_DEFINE_FOCAL_HALF(v4d, 256, __m256d, FL_TARGET_V3)

/* A float32 span of the focal loss goes through chunks of FL_FOCAL_CHUNK
 * elements in four passes, each a loop of short chains over a block of 8:
 * (1) e = exp(-min(|x|, 104)) in double lanes (and x widened), (2) log1p(e)
 * in float lanes, (3) the loss in double lanes (fl_focal_half_v4d), summed,
 * with what the gradient takes from it rounded to float, (4) the gradient in
 * float lanes and the outputs.  One pass of the whole chain per block (about
 * 170 cycles deep) leaves the out-of-order window too few independent blocks
 * to overlap; the passes keep each chain short and the intermediate values in
 * a chunk buffer in L1.  The outputs are written in pass 4 only, each block's
 * after its inputs are read (an output may be an input). */
#define FL_FOCAL_CHUNK 256

typedef struct {
    double x[FL_FOCAL_CHUNK], e[FL_FOCAL_CHUNK];    /* x and e = exp(-|x|) in double */
    float e_f[FL_FOCAL_CHUNK], log1p_e[FL_FOCAL_CHUNK];
    float q[FL_FOCAL_CHUNK], ce[FL_FOCAL_CHUNK], a_t[FL_FOCAL_CHUNK];   /* rounded to float */
    float loss[FL_FOCAL_CHUNK];                     /* fl(w loss) */
} fl_focal_chunk;

typedef struct {
    __m256d alpha_slope, alpha_intercept, w;
    __m256 gamma, scale;                            /* gamma and w grad_scale in float */
} fl_focal_consts;

/* Pass 1 for the block at i: x widened to double and e = exp(-min(|x|, 104))
 * in double and rounded to float.  min(104, a): NaN passes (minpd returns its
 * second operand then), and comes out of fl_exp_neg_v4d as NaN: a NaN widened
 * from float has its low 29 mantissa bits 0, so its 2^n bits (the low 12,
 * shifted by 52) add 0. */
__attribute__((always_inline))
static inline void fl_focal_exp_v8(const float *x_in, fl_focal_chunk *c, ptrdiff_t i)
{
    const __m256d limit = _mm256_set1_pd(104.0), sign_bit = _mm256_set1_pd(-0.0);
    __m256d x_lo = _mm256_cvtps_pd(_mm_loadu_ps(x_in));
    __m256d x_hi = _mm256_cvtps_pd(_mm_loadu_ps(x_in + 4));
    __m256d e_lo = fl_exp_neg_v4d(_mm256_min_pd(limit, _mm256_andnot_pd(sign_bit, x_lo)), 1);
    __m256d e_hi = fl_exp_neg_v4d(_mm256_min_pd(limit, _mm256_andnot_pd(sign_bit, x_hi)), 1);
    _mm256_store_pd(c->x + i, x_lo);
    _mm256_store_pd(c->x + i + 4, x_hi);
    _mm256_store_pd(c->e + i, e_lo);
    _mm256_store_pd(c->e + i + 4, e_hi);
    _mm256_store_ps(c->e_f + i, fl_join_ps(e_lo, e_hi));
}

/* Pass 3 for the block at i (gamma variant 0, 1 or 2): the unweighted loss in
 * double lanes, added to *acc_lo (lanes 0-3) and *acc_hi (4-7); c->loss gets
 * fl(w loss) when with_loss; with_grad: c->q, c->ce (capped at FLT_MAX: the
 * gradient's ce times sigma(x) sigma(-x) -> 0 as |x| -> inf, and the cap gives
 * that limit, not inf * 0; a NaN passes, minps returning its second operand)
 * and c->a_t in float.  *bits keeps the unsigned maximum of the targets' bits
 * (+0 for -0). */
__attribute__((always_inline))
static inline void fl_focal_loss_v8(const int variant, const float *t_in, fl_focal_chunk *c,
                                    ptrdiff_t i, const fl_focal_consts *k, int with_loss,
                                    int with_grad, __m256d *acc_lo, __m256d *acc_hi,
                                    __m256i *bits)
{
    __m256 t = _mm256_loadu_ps(t_in);
    *bits = _mm256_max_epu32(*bits, _mm256_castps_si256(_mm256_add_ps(t, _mm256_setzero_ps())));
    __m256d x_lo = _mm256_load_pd(c->x + i), x_hi = _mm256_load_pd(c->x + i + 4);
    __m256d a_lo = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x_lo);
    __m256d a_hi = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x_hi);
    /* (the high half of t widened from memory: no lane extraction) */
    __m256d t_lo = fl_lo_pd(t), t_hi = _mm256_cvtps_pd(_mm_loadu_ps(t_in + 4));
    __m256 log1p_e = _mm256_load_ps(c->log1p_e + i);
    __m256d q_lo, q_hi, ce_lo, ce_hi, at_lo, at_hi;
    __m256d loss_lo = fl_focal_half_v4d(variant, x_lo, a_lo, t_lo, _mm256_load_pd(c->e + i),
                                        fl_lo_pd(log1p_e), k->alpha_slope, k->alpha_intercept,
                                        &q_lo, &ce_lo, &at_lo);
    __m256d loss_hi = fl_focal_half_v4d(variant, x_hi, a_hi, t_hi, _mm256_load_pd(c->e + i + 4),
                                        fl_hi_pd(log1p_e), k->alpha_slope, k->alpha_intercept,
                                        &q_hi, &ce_hi, &at_hi);
    if (with_loss)
        _mm256_store_ps(c->loss + i, fl_join_ps(_mm256_mul_pd(k->w, loss_lo),
                                                _mm256_mul_pd(k->w, loss_hi)));
    *acc_lo = _mm256_add_pd(*acc_lo, loss_lo);
    *acc_hi = _mm256_add_pd(*acc_hi, loss_hi);
    if (with_grad) {
        if (variant > 0)
            _mm256_store_ps(c->q + i, fl_join_ps(q_lo, q_hi));
        _mm256_store_ps(c->ce + i, _mm256_min_ps(_mm256_set1_ps(FLT_MAX),
                                                 fl_join_ps(ce_lo, ce_hi)));
        _mm256_store_ps(c->a_t + i, fl_join_ps(at_lo, at_hi));
    }
}

/* Pass 4 for the block at i: grad_out gets fl(w grad_scale grad), grad =
 * a_t (q^gamma d ce / dx + gamma (1 - 2t) ce q^(gamma - 1) sigma(x) sigma(-x))
 * in float lanes, d ce / dx = (1 - t) sigma(x) - t sigma(-x). */
#define FL_DEFINE_FOCAL_GRAD(SUFFIX, W, V, ATTR)                                           \
ATTR FL_INLINE void fl_focal_grad_##SUFFIX(const int variant, const float *x_in,           \
                                           const float *t_in, const fl_focal_chunk *c,     \
                                           ptrdiff_t i, V gamma, V scale, float *grad_out) \
{                                                                                          \
    const V one = FL_W(W, set1_ps)(1.0f);                                                  \
    V x = FL_W(W, loadu_ps)(x_in);                                                         \
    V t = FL_W(W, loadu_ps)(t_in);                                                         \
    V e = FL_W(W, loadu_ps)(c->e_f + i);                                                   \
    V inv_f = FL_W(W, div_ps)(one, FL_W(W, add_ps)(one, e));                               \
    V e_inv = FL_W(W, mul_ps)(e, inv_f);                                                   \
    /* chosen by x's sign bit: at x = -0, e inv = inv; a NaN x makes both NaN */           \
    FL_MASK_PS(W) negative = FL_SIGN_PS(W)(x);                                             \
    V sigma_pos = FL_PICK_PS(W)(negative, inv_f, e_inv);                                   \
    V sigma_neg = FL_PICK_PS(W)(negative, e_inv, inv_f);                                   \
    V sigma_product = FL_W(W, mul_ps)(e_inv, inv_f);                                       \
    V q = variant > 0 ? FL_W(W, loadu_ps)(c->q + i) : one;                                 \
    V below = FL_W(W, setzero_ps)();                                                       \
    if (variant == 1)                                                                      \
        below = sigma_product;                                                             \
    else if (variant == 2)                                                                 \
        below = FL_W(W, mul_ps)(q, sigma_product);                                         \
    V dce = FL_W(W, fmsub_ps)(FL_W(W, sub_ps)(one, t), sigma_pos,                          \
                              FL_W(W, mul_ps)(t, sigma_neg));                              \
    V g = FL_W(W, mul_ps)(gamma, FL_W(W, fnmadd_ps)(FL_W(W, set1_ps)(2.0f), t, one));      \
    V focus = FL_W(W, mul_ps)(FL_W(W, loadu_ps)(c->ce + i), below);                        \
    V power = variant == 0 ? one : (variant == 1 ? q : FL_W(W, mul_ps)(q, q));             \
    V grad = FL_W(W, fmadd_ps)(power, dce, FL_W(W, mul_ps)(g, focus));                     \
    grad = FL_W(W, mul_ps)(FL_W(W, loadu_ps)(c->a_t + i), grad);                           \
    FL_W(W, storeu_ps)(grad_out, FL_W(W, mul_ps)(grad, scale));                            \
}
FL_DEFINE_FOCAL_GRAD(v8, 256, __m256, FL_TARGET_V3)

/* Pass 1's prefetches at element i of a chunk of m (see fl_focal_chunk_v8). */
FL_INLINE void fl_focal_prefetch(const float *x, const float *t, const float *grad_out,
                                 ptrdiff_t m, ptrdiff_t ahead, ptrdiff_t i)
{
    _mm_prefetch((const char *)(t + i), _MM_HINT_T0);
    if (grad_out)
        _mm_prefetch((const char *)(grad_out + i), _MM_HINT_T0);
    if (i < ahead)
        _mm_prefetch((const char *)(x + m + i), _MM_HINT_T0);
}

#ifdef FL_HAVE_WIDE_LANES
/* The four passes in 512-bit registers, for CPUs with AVX-512
 * (fl_focal_chunk_v8 takes them when fl_set_wide_lanes has found it): the
 * double passes (1 and 3) with the 8 doubles of a block in one register, the
 * float passes (2 and 4) 16 elements at a time; the same operations lane by
 * lane, so the same values and sums (the accumulator's lanes stay j % 8). */
FL_DEFINE_EXP_NEG_PD(v8d, 512, __m512d, FL_TARGET_AVX512)

FL_DEFINE_FOCAL_HALF(v8d, 512, __m512d, FL_TARGET_AVX512)

/* Pass 1 over the m elements of a chunk (fl_focal_exp_v8 and its prefetches). */
FL_TARGET_AVX512
static void fl_focal_exp_pass_wide(const float *x, const float *t, const float *grad_out,
                                   ptrdiff_t m, ptrdiff_t ahead, fl_focal_chunk *c)
{
    const __m512d limit = _mm512_set1_pd(104.0);
    for (ptrdiff_t i = 0; i < m; i += 8) {
        if (i % 16 == 0)
            fl_focal_prefetch(x, t, grad_out, m, ahead, i);
        __m512d xd = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        __m512d e = fl_exp_neg_v8d(_mm512_min_pd(limit, _mm512_abs_pd(xd)), 1);
        _mm512_storeu_pd(c->x + i, xd);
        _mm512_storeu_pd(c->e + i, e);
        _mm256_store_ps(c->e_f + i, _mm512_cvtpd_ps(e));
    }
}

/* Pass 3 over the m elements of a chunk (fl_focal_loss_v8 for each block). */
FL_TARGET_AVX512
static void fl_focal_loss_pass_wide(const int variant, const float *t_in, fl_focal_chunk *c,
                                    ptrdiff_t m, const fl_focal_consts *k, int with_loss,
                                    int with_grad, __m256d *acc_lo, __m256d *acc_hi,
                                    __m256i *bits)
{
    const __m512d slope = _mm512_broadcast_f64x4(k->alpha_slope);
    const __m512d intercept = _mm512_broadcast_f64x4(k->alpha_intercept);
    const __m512d w = _mm512_broadcast_f64x4(k->w);
    __m512d acc = _mm512_insertf64x4(_mm512_castpd256_pd512(*acc_lo), *acc_hi, 1);
    __m256i b = *bits;
    for (ptrdiff_t i = 0; i < m; i += 8) {
        __m256 t = _mm256_loadu_ps(t_in + i);
        b = _mm256_max_epu32(b, _mm256_castps_si256(_mm256_add_ps(t, _mm256_setzero_ps())));
        __m512d x = _mm512_loadu_pd(c->x + i);
        __m512d q, ce, a_t;
        __m512d loss = fl_focal_half_v8d(variant, x, _mm512_abs_pd(x), _mm512_cvtps_pd(t),
                                         _mm512_loadu_pd(c->e + i),
                                         _mm512_cvtps_pd(_mm256_load_ps(c->log1p_e + i)),
                                         slope, intercept, &q, &ce, &a_t);
        if (with_loss)
            _mm256_store_ps(c->loss + i, _mm512_cvtpd_ps(_mm512_mul_pd(w, loss)));
        acc = _mm512_add_pd(acc, loss);
        if (with_grad) {
            if (variant > 0)
                _mm256_store_ps(c->q + i, _mm512_cvtpd_ps(q));
            _mm256_store_ps(c->ce + i, _mm256_min_ps(_mm256_set1_ps(FLT_MAX),
                                                     _mm512_cvtpd_ps(ce)));
            _mm256_store_ps(c->a_t + i, _mm512_cvtpd_ps(a_t));
        }
    }
    *acc_lo = _mm512_castpd512_pd256(acc);
    *acc_hi = _mm512_extractf64x4_pd(acc, 1);
    *bits = b;
}

FL_DEFINE_BCE_LOG1P_UNIT(v16, 512, __m512, FL_TARGET_AVX512)

/* Pass 2 over the m elements of a chunk, 16 at a time (8 at the end). */
FL_TARGET_AVX512
static void fl_focal_log1p_pass_wide(fl_focal_chunk *c, ptrdiff_t m)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= m; i += 16)
        _mm512_storeu_ps(c->log1p_e + i, fl_bce_log1p_unit_v16(_mm512_loadu_ps(c->e_f + i)));
    if (i < m)
        _mm256_store_ps(c->log1p_e + i, fl_bce_log1p_unit_v8(_mm256_load_ps(c->e_f + i)));
}

/* Pass 4 over the m elements of a chunk, 16 at a time (8 at the end). */
FL_DEFINE_FOCAL_GRAD(v16, 512, __m512, FL_TARGET_AVX512)

FL_TARGET_AVX512
static void fl_focal_grad_pass_wide(const int variant, const float *x_in, const float *t_in,
                                    const fl_focal_chunk *c, ptrdiff_t m,
                                    const fl_focal_consts *k, float *grad_out)
{
    const __m512 gamma = _mm512_broadcast_f32x8(k->gamma);
    const __m512 scale = _mm512_broadcast_f32x8(k->scale);
    ptrdiff_t i = 0;
    for (; i + 16 <= m; i += 16)
        fl_focal_grad_v16(variant, x_in + i, t_in + i, c, i, gamma, scale, grad_out + i);
    if (i < m)
        fl_focal_grad_v8(variant, x_in + i, t_in + i, c, i, k->gamma, k->scale, grad_out + i);
}
#endif

/* The m elements (a multiple of 8, at most FL_FOCAL_CHUNK) at x, t through the
 * four passes; loss_out and grad_out written where not NULL.  ahead: how many
 * elements of x follow the chunk.  Pass 1 also prefetches a cache line of t
 * and grad_out (read and written by the later passes) and of the next chunk's
 * x per 16 elements: each stream would otherwise come from memory in a burst
 * within one pass (about 5% at 1e7 elements). */
__attribute__((always_inline))
static inline void fl_focal_chunk_v8(const int variant, const float *x, const float *t,
                                     ptrdiff_t m, ptrdiff_t ahead, const fl_focal_consts *k,
                                     float *loss_out, float *grad_out, fl_focal_chunk *c,
                                     __m256d *acc_lo, __m256d *acc_hi, __m256i *bits)
{
    ptrdiff_t i;
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes)
        fl_focal_exp_pass_wide(x, t, grad_out, m, ahead, c);
    else
#endif
    for (i = 0; i < m; i += 8) {
        if (i % 16 == 0)
            fl_focal_prefetch(x, t, grad_out, m, ahead, i);
        fl_focal_exp_v8(x + i, c, i);
    }
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes)
        fl_focal_log1p_pass_wide(c, m);
    else
#endif
    for (i = 0; i < m; i += 8)
        _mm256_store_ps(c->log1p_e + i, fl_bce_log1p_unit_v8(_mm256_load_ps(c->e_f + i)));
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes)
        fl_focal_loss_pass_wide(variant, t, c, m, k, loss_out != NULL, grad_out != NULL,
                                acc_lo, acc_hi, bits);
    else
#endif
    for (i = 0; i < m; i += 8)
        fl_focal_loss_v8(variant, t + i, c, i, k, loss_out != NULL, grad_out != NULL,
                         acc_lo, acc_hi, bits);
#ifdef FL_HAVE_WIDE_LANES
    if (grad_out && fl_wide_lanes)
        fl_focal_grad_pass_wide(variant, x, t, c, m, k, grad_out);
    else
#endif
    if (grad_out)
        for (i = 0; i < m; i += 8)
            fl_focal_grad_v8(variant, x + i, t + i, c, i, k->gamma, k->scale, grad_out + i);
    if (loss_out)
        memcpy(loss_out, c->loss, (size_t)m * sizeof(float));
}

__attribute__((always_inline))
static inline double fl_focal_span_v8(const int variant, const float *x, const float *t,
                                      ptrdiff_t n, double alpha, double gamma, double w,
                                      double grad_scale, float *loss_out, float *grad_out,
                                      int *invalid)
{
    /* a_t = alpha t + (1 - alpha)(1 - t) = (1 - alpha) + (2 alpha - 1) t, or 1 */
    int has_alpha = alpha >= 0.0;
    fl_focal_consts k;
    k.alpha_slope = _mm256_set1_pd(has_alpha ? 2.0 * alpha - 1.0 : 0.0);
    k.alpha_intercept = _mm256_set1_pd(has_alpha ? 1.0 - alpha : 1.0);
    k.w = _mm256_set1_pd(w);
    k.gamma = _mm256_set1_ps((float)gamma);
    k.scale = _mm256_set1_ps((float)(w * grad_scale));
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    __m256i bits = _mm256_setzero_si256();
    fl_focal_chunk c __attribute__((aligned(32)));
    ptrdiff_t j = 0;
    while (j + 8 <= n) {
        ptrdiff_t m = (n - j) & ~(ptrdiff_t)7;
        if (m > FL_FOCAL_CHUNK)
            m = FL_FOCAL_CHUNK;
        fl_focal_chunk_v8(variant, x + j, t + j, m, n - j - m, &k,
                          loss_out ? loss_out + j : NULL,
                          grad_out ? grad_out + j : NULL, &c, &acc_lo, &acc_hi, &bits);
        j += m;
    }
    if (j < n) {
        /* the last n - j < 8 elements through zero-padded copies */
        float xb[8] = {0}, tb[8] = {0}, lb[8], gb[8];
        ptrdiff_t m = n - j, r;
        for (r = 0; r < m; r++) {
            xb[r] = x[j + r];
            tb[r] = t[j + r];
        }
        __m256d tail_lo = _mm256_setzero_pd(), tail_hi = _mm256_setzero_pd();
        fl_focal_chunk_v8(variant, xb, tb, 8, 0, &k, loss_out ? lb : NULL, grad_out ? gb : NULL,
                          &c, &tail_lo, &tail_hi, &bits);
        double lanes[8];
        _mm256_storeu_pd(lanes, tail_lo);
        _mm256_storeu_pd(lanes + 4, tail_hi);
        for (r = m; r < 8; r++)
            lanes[r] = 0.0;
        acc_lo = _mm256_add_pd(acc_lo, _mm256_loadu_pd(lanes));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_loadu_pd(lanes + 4));
        for (r = 0; r < m; r++) {
            if (loss_out) loss_out[j + r] = lb[r];
            if (grad_out) grad_out[j + r] = gb[r];
        }
    }
    __m256i over = _mm256_cmpgt_epi32(_mm256_xor_si256(bits, _mm256_set1_epi32(INT32_MIN)),
                                      _mm256_set1_epi32((int32_t)(0x3f800000u ^ 0x80000000u)));
    *invalid = !_mm256_testz_si256(over, over);
    __m256d s = _mm256_add_pd(acc_lo, acc_hi);
    double lanes[4];
    _mm256_storeu_pd(lanes, s);
    return w * ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]));
}
#endif

static inline int fl_focal_span_built(void)
{
#ifdef FL_HAVE_FOCAL_V8
    return 1;
#else
    return 0;
#endif
}

/* sigmoid_focal_loss of n float32 elements (logits x, targets t) for gamma
 * variant 0, 1 or 2 (gamma = 0, 1, 2) and one weight w: returns w times the
 * sum of loss_j, in double; *invalid = 1 when a target is outside [0, 1] or NaN.
 * Only when fl_focal_span_built() (else returns 0 and does nothing). */
static inline double fl_focal_span_float(int variant, const float *x, const float *t,
                                         ptrdiff_t n, double alpha, double gamma, double w,
                                         double grad_scale, float *loss_out, float *grad_out,
                                         int *invalid)
{
#ifdef FL_HAVE_FOCAL_V8
    /* one loop per case, so that each is compiled without the others' tests
     * (the gradient without the per-sample loss is the common one) */
    if (variant == 2) {
        if (!loss_out && grad_out)
            return fl_focal_span_v8(2, x, t, n, alpha, gamma, w, grad_scale, NULL, grad_out,
                                    invalid);
        return fl_focal_span_v8(2, x, t, n, alpha, gamma, w, grad_scale, loss_out, grad_out,
                                invalid);
    }
    if (variant == 1)
        return fl_focal_span_v8(1, x, t, n, alpha, gamma, w, grad_scale, loss_out, grad_out,
                                invalid);
    return fl_focal_span_v8(0, x, t, n, alpha, gamma, w, grad_scale, loss_out, grad_out,
                            invalid);
#else
    (void)variant; (void)x; (void)t; (void)n; (void)alpha; (void)gamma; (void)w;
    (void)grad_scale; (void)loss_out; (void)grad_out;
    *invalid = 0;
    return 0.0;
#endif
}


/* log_cosh of n float32 elements (predictions p, targets t, |p|, |t| <= 2^126:
 * log_cosh_span_ok) in float lanes, the maths of log_cosh_element_float
 * (the same polynomials; exp(-2a) by fl_bce_exp_neg_v8): near (a < 1)
 * loss = z LOG_COSH_NEAR(z) with r's rounding restored to first order,
 * tanh = a TANH_NEAR(z), hess = 1 - tanh^2; far e = exp(-2a), loss =
 * (a - log 2) + e LOG1P_FAR(e) in double, tanh = (1 - e) / (1 + e), hess =
 * 4 e / (1 + e)^2.  Returns the sum of w loss_j in double; hess_out[j] =
 * fl(w grad_scale hess).  Only when fl_log_cosh_span_built(). */
static const float FL_LOG_COSH_NEAR[8] = {
    -2.561730310e-05f, 1.761986267e-04f, -6.794099122e-04f, 2.161291898e-03f,
    -6.739799482e-03f, 2.222146449e-02f, -8.333329776e-02f, 4.999999997e-01f};
static const float FL_LOG_COSH_TANH_NEAR[8] = {
    -3.523280944e-04f, 2.278647665e-03f, -7.912485059e-03f, 2.146141016e-02f,
    -5.386970672e-02f, 1.333213931e-01f, -3.333327738e-01f, 9.999999956e-01f};
static const float FL_LOG_COSH_LOG1P_FAR[6] = {
    -1.195333809e-01f, 1.933154839e-01f, -2.495463321e-01f, 3.333191922e-01f,
    -4.999998373e-01f, 9.999999997e-01f};

static inline int fl_log_cosh_span_built(void)
{
#ifdef FL_HAVE_FOCAL_V8
    return 1;
#else
    return 0;
#endif
}

#ifdef FL_HAVE_FOCAL_V8
__attribute__((always_inline))
static inline __m256 fl_log_cosh_horner_v8(const float *c, const int n, __m256 x)
{
    __m256 p = _mm256_set1_ps(c[0]);
    for (int k = 1; k < n; k++)
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(c[k]));
    return p;
}

/* The float part of a block of log_cosh (either width): |r| to *a, the near
 * loss and e LOG1P_FAR(e) to *near_loss and *far_log1p for the double part,
 * grad_out written where not NULL, and the Hessian (before its scale) to *h
 * when with_hess. */
#define FL_DEFINE_LOG_COSH_PARTS(SUFFIX, W, V, ATTR)                                       \
ATTR FL_INLINE void fl_log_cosh_parts_##SUFFIX(const float *p_in, const float *t_in,       \
                                               V scale, float *grad_out, int with_hess,    \
                                               V *a_out, V *near_loss, V *far_log1p, V *h) \
{                                                                                          \
    const V one = FL_W(W, set1_ps)(1.0f), sign = FL_W(W, set1_ps)(-0.0f);                  \
    V p = FL_W(W, loadu_ps)(p_in);                                                         \
    V t = FL_W(W, loadu_ps)(t_in);                                                         \
    V r = FL_W(W, sub_ps)(p, t);                                                           \
    V t_part = FL_W(W, sub_ps)(r, p);          /* Knuth's TwoSum: p - t = r + r_error */   \
    V r_error = FL_W(W, add_ps)(FL_W(W, sub_ps)(p, FL_W(W, sub_ps)(r, t_part)),            \
                                FL_W(W, sub_ps)(FL_W(W, xor_ps)(t, sign), t_part));        \
    V a = FL_W(W, andnot_ps)(sign, r);                                                     \
    V z = FL_W(W, mul_ps)(a, a);                                                           \
    V near_poly = fl_log_cosh_horner_##SUFFIX(FL_LOG_COSH_NEAR, 8, z);                     \
    V correction = FL_W(W, mul_ps)(FL_W(W, mul_ps)(FL_W(W, mul_ps)(                        \
        FL_W(W, set1_ps)(2.0f), r), r_error), near_poly);                                  \
    *near_loss = FL_W(W, fmadd_ps)(z, near_poly, correction);                              \
    V near_tanh = FL_W(W, mul_ps)(a, fl_log_cosh_horner_##SUFFIX(FL_LOG_COSH_TANH_NEAR, 8, z)); \
    V e = fl_bce_exp_neg_##SUFFIX(FL_W(W, mul_ps)(FL_W(W, set1_ps)(-2.0f), a));            \
    V inv = FL_W(W, div_ps)(one, FL_W(W, add_ps)(one, e));                                 \
    *far_log1p = FL_W(W, mul_ps)(e, fl_log_cosh_horner_##SUFFIX(FL_LOG_COSH_LOG1P_FAR, 6, e)); \
    FL_MASK_PS(W) near = FL_CMP_PS(W)(a, one, _CMP_LT_OQ);                                 \
    V tanh_a = FL_PICK_PS(W)(near, FL_W(W, mul_ps)(FL_W(W, sub_ps)(one, e), inv), near_tanh); \
    if (grad_out) {                                                                        \
        FL_MASK_PS(W) ge = FL_CMP_PS(W)(r, FL_W(W, setzero_ps)(), _CMP_GE_OQ);             \
        V grad = FL_PICK_PS(W)(ge, FL_W(W, xor_ps)(tanh_a, sign), tanh_a);  /* NaN: NaN */ \
        FL_W(W, storeu_ps)(grad_out, FL_W(W, mul_ps)(grad, scale));                        \
    }                                                                                      \
    if (with_hess)                                                                         \
        *h = FL_PICK_PS(W)(near, FL_W(W, mul_ps)(FL_W(W, mul_ps)(FL_W(W, mul_ps)(          \
                 FL_W(W, set1_ps)(4.0f), e), inv), inv),                                   \
                           FL_W(W, fnmadd_ps)(near_tanh, near_tanh, one));                 \
    *a_out = a;                                                                            \
}
FL_DEFINE_LOG_COSH_PARTS(v8, 256, __m256, FL_TARGET_V3)

__attribute__((always_inline))
static inline void fl_log_cosh_block_v8(const float *p_in, const float *t_in, __m256 scale,
                                        __m256d w_d, __m256d hess_scale, int unit_w,
                                        float *loss_out, float *grad_out, float *hess_out,
                                        __m256d *acc_lo, __m256d *acc_hi)
{
    __m256 a, near_loss, far_log1p, h;
    fl_log_cosh_parts_v8(p_in, t_in, scale, grad_out, hess_out != NULL, &a, &near_loss,
                         &far_log1p, &h);
    if (hess_out)
        _mm256_storeu_ps(hess_out, fl_join_ps(_mm256_mul_pd(hess_scale, fl_lo_pd(h)),
                                                 _mm256_mul_pd(hess_scale, fl_hi_pd(h))));
    const __m256d ln2 = _mm256_set1_pd(0.6931471805599453), one_d = _mm256_set1_pd(1.0);
    __m256d a_lo = fl_lo_pd(a), a_hi = fl_hi_pd(a);
    __m256d far_lo = _mm256_add_pd(_mm256_sub_pd(a_lo, ln2), fl_lo_pd(far_log1p));
    __m256d far_hi = _mm256_add_pd(_mm256_sub_pd(a_hi, ln2), fl_hi_pd(far_log1p));
    __m256d loss_lo = _mm256_blendv_pd(far_lo, fl_lo_pd(near_loss),
                                       _mm256_cmp_pd(a_lo, one_d, _CMP_LT_OQ));
    __m256d loss_hi = _mm256_blendv_pd(far_hi, fl_hi_pd(near_loss),
                                       _mm256_cmp_pd(a_hi, one_d, _CMP_LT_OQ));
    if (!unit_w) {
        loss_lo = _mm256_mul_pd(w_d, loss_lo);
        loss_hi = _mm256_mul_pd(w_d, loss_hi);
    }
    if (loss_out)
        _mm256_storeu_ps(loss_out, fl_join_ps(loss_lo, loss_hi));
    *acc_lo = _mm256_add_pd(*acc_lo, loss_lo);
    *acc_hi = _mm256_add_pd(*acc_hi, loss_hi);
}

#ifdef FL_HAVE_WIDE_LANES
FL_DEFINE_BCE_EXP_NEG(v16, 512, __m512, FL_TARGET_AVX512)

FL_TARGET_AVX512
FL_INLINE __m512 fl_log_cosh_horner_v16(const float *c, const int n, __m512 x)
{
    __m512 p = _mm512_set1_ps(c[0]);
    for (int k = 1; k < n; k++)
        p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(c[k]));
    return p;
}

/* The losses of 8 elements (a and the float loss pieces widened to double),
 * as fl_log_cosh_block_v8 makes them, stored and added to *acc. */
FL_TARGET_AVX512
FL_INLINE void fl_log_cosh_loss_v8d(__m256 a, __m256 near_loss, __m256 far_log1p,
                                    __m512d w_d, int unit_w, float *loss_out, __m512d *acc)
{
    const __m512d one_d = _mm512_set1_pd(1.0);
    __m512d a_d = _mm512_cvtps_pd(a);
    __m512d far = _mm512_add_pd(_mm512_sub_pd(a_d, _mm512_set1_pd(0.6931471805599453)),
                                _mm512_cvtps_pd(far_log1p));
    __m512d loss = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a_d, one_d, _CMP_LT_OQ), far,
                                        _mm512_cvtps_pd(near_loss));
    if (!unit_w)
        loss = _mm512_mul_pd(w_d, loss);
    if (loss_out)
        _mm256_storeu_ps(loss_out, _mm512_cvtpd_ps(loss));
    *acc = _mm512_add_pd(*acc, loss);
}

/* fl_log_cosh_block_v8 for 16 elements: the same values, and the losses added
 * to *acc 8 at a time, as two blocks of 8 add them. */
FL_DEFINE_LOG_COSH_PARTS(v16, 512, __m512, FL_TARGET_AVX512)

FL_TARGET_AVX512
FL_INLINE void fl_log_cosh_block_v16(const float *p_in, const float *t_in, __m512 scale,
                                     __m512d w_d, __m512d hess_scale, int unit_w,
                                     float *loss_out, float *grad_out, float *hess_out,
                                     __m512d *acc)
{
    __m512 a, near_loss, far_log1p, h;
    fl_log_cosh_parts_v16(p_in, t_in, scale, grad_out, hess_out != NULL, &a, &near_loss,
                          &far_log1p, &h);
    if (hess_out) {
        __m256 h_lo = _mm512_cvtpd_ps(_mm512_mul_pd(hess_scale,
                                                    _mm512_cvtps_pd(_mm512_castps512_ps256(h))));
        __m256 h_hi = _mm512_cvtpd_ps(_mm512_mul_pd(hess_scale,
                                                    _mm512_cvtps_pd(_mm512_extractf32x8_ps(h, 1))));
        _mm256_storeu_ps(hess_out, h_lo);
        _mm256_storeu_ps(hess_out + 8, h_hi);
    }
    fl_log_cosh_loss_v8d(_mm512_castps512_ps256(a), _mm512_castps512_ps256(near_loss),
                         _mm512_castps512_ps256(far_log1p), w_d, unit_w, loss_out, acc);
    fl_log_cosh_loss_v8d(_mm512_extractf32x8_ps(a, 1), _mm512_extractf32x8_ps(near_loss, 1),
                         _mm512_extractf32x8_ps(far_log1p, 1), w_d, unit_w,
                         loss_out ? loss_out + 8 : NULL, acc);
}

/* The first 16 floor(n / 16) elements of fl_log_cosh_span_v8 in 16 lanes, the
 * sums added to its *acc_lo and *acc_hi; returns how many elements it took. */
FL_TARGET_AVX512
static ptrdiff_t fl_log_cosh_blocks_wide(const float *p, const float *t, ptrdiff_t n,
                                         double w, double grad_scale, int unit_w,
                                         float *loss_out, float *grad_out, float *hess_out,
                                         __m256d *acc_lo, __m256d *acc_hi)
{
    __m512 scale = _mm512_set1_ps((float)(w * grad_scale));
    __m512d w_d = _mm512_set1_pd(w), hess_scale = _mm512_set1_pd(w * grad_scale);
    __m512d acc = _mm512_insertf64x4(_mm512_castpd256_pd512(*acc_lo), *acc_hi, 1);
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16)
        fl_log_cosh_block_v16(p + j, t + j, scale, w_d, hess_scale, unit_w,
                              loss_out ? loss_out + j : NULL, grad_out ? grad_out + j : NULL,
                              hess_out ? hess_out + j : NULL, &acc);
    *acc_lo = _mm512_castpd512_pd256(acc);
    *acc_hi = _mm512_extractf64x4_pd(acc, 1);
    return j;
}
#endif

__attribute__((always_inline))
static inline double fl_log_cosh_span_v8(const float *p, const float *t, ptrdiff_t n, double w,
                                         double grad_scale, float *loss_out, float *grad_out,
                                         float *hess_out)
{
    int unit_w = w == 1.0;
    __m256 scale = _mm256_set1_ps((float)(w * grad_scale));
    __m256d w_d = _mm256_set1_pd(w), hess_scale = _mm256_set1_pd(w * grad_scale);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    ptrdiff_t j = 0;
#ifdef FL_HAVE_WIDE_LANES
    if (fl_wide_lanes)
        j = fl_log_cosh_blocks_wide(p, t, n, w, grad_scale, unit_w, loss_out, grad_out, hess_out,
                                    &acc_lo, &acc_hi);
#endif
    for (; j + 8 <= n; j += 8)
        fl_log_cosh_block_v8(p + j, t + j, scale, w_d, hess_scale, unit_w,
                             loss_out ? loss_out + j : NULL, grad_out ? grad_out + j : NULL,
                             hess_out ? hess_out + j : NULL, &acc_lo, &acc_hi);
    if (j < n) {
        float pb[8] = {0}, tb[8] = {0}, lb[8], gb[8], hb[8];
        ptrdiff_t m = n - j, k;
        for (k = 0; k < m; k++) {
            pb[k] = p[j + k];
            tb[k] = t[j + k];
        }
        __m256d tail_lo = _mm256_setzero_pd(), tail_hi = _mm256_setzero_pd();
        fl_log_cosh_block_v8(pb, tb, scale, w_d, hess_scale, unit_w, lb, grad_out ? gb : NULL,
                             hess_out ? hb : NULL, &tail_lo, &tail_hi);
        double lanes[8];
        _mm256_storeu_pd(lanes, tail_lo);
        _mm256_storeu_pd(lanes + 4, tail_hi);
        for (k = m; k < 8; k++)
            lanes[k] = 0.0;
        acc_lo = _mm256_add_pd(acc_lo, _mm256_loadu_pd(lanes));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_loadu_pd(lanes + 4));
        for (k = 0; k < m; k++) {
            if (loss_out) loss_out[j + k] = lb[k];
            if (grad_out) grad_out[j + k] = gb[k];
            if (hess_out) hess_out[j + k] = hb[k];
        }
    }
    __m256d s = _mm256_add_pd(acc_lo, acc_hi);
    double lanes[4];
    _mm256_storeu_pd(lanes, s);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
#endif

static inline double fl_log_cosh_span_float(const float *p, const float *t, ptrdiff_t n,
                                            double w, double grad_scale, float *loss_out,
                                            float *grad_out, float *hess_out)
{
#ifdef FL_HAVE_FOCAL_V8
    if (!loss_out && !hess_out)
        return fl_log_cosh_span_v8(p, t, n, w, grad_scale, NULL, grad_out, NULL);
    return fl_log_cosh_span_v8(p, t, n, w, grad_scale, loss_out, grad_out, hess_out);
#else
    (void)p; (void)t; (void)n; (void)w; (void)grad_scale; (void)loss_out; (void)grad_out;
    (void)hess_out;
    return 0.0;
#endif
}


/* ------------------------------------------------------------------ gaussian_nll */

/* gaussian_nll of n float32 elements (mean, target, var) sharing one weight w,
 * for spans whose values gaussian_nll_span_ok accepts (v = max(var, eps) in
 * [2^-40, 2^40], |mean|, |target| <= 2^40), in AVX2 lanes: the maths of
 * gaussian_nll_element_float (inv = 1 / v one float division, r = fl(mean -
 * target), r / v = r inv, r^2 / v = r (r / v), log v by fl_logf_core's
 * reduction and polynomial with FMAs), the loss 0.5 (log v + r^2 / v) +
 * constant in double, w loss summed per lane in double in the same pass
 * (lane k takes the elements j with j % 8 == k, combined in sum_span's
 * order).  Writes, where not NULL, loss_out[j] = fl(w loss), grad_out[j] =
 * fl(w grad_scale) r / v, grad_var_out[j] = fl(w grad_scale) 0.5 inv (1 - r^2
 * / v), hess_out[j] = fl(w grad_scale inv); *invalid = 1 when a var is
 * negative (NaN passes).  Every output element is written after its inputs
 * are read.  Only when fl_gaussian_span_built() (else returns 0, does nothing). */
static inline int fl_gaussian_span_built(void)
{
#ifdef FL_HAVE_FAST_ROWS
    return 1;
#else
    return 0;
#endif
}

#ifdef FL_HAVE_FAST_ROWS
/* log(v) for eight positive normal floats: fl_logf_core(v, 0)'s maths */
__attribute__((always_inline))
static inline __m256 fl_logf_normal_v8(__m256 v)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i bits = _mm256_castps_si256(v);
    /* the biased exponent as a float: its 8 bits under 2^23's exponent, less 2^23 */
    __m256 k = _mm256_sub_ps(
        _mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(bits, 23),
                                            _mm256_set1_epi32(0x4b000000))),
        _mm256_set1_ps(8388608.0f + 127.0f));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
    __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
    k = _mm256_add_ps(k, _mm256_and_ps(big, one));
    __m256 f = _mm256_sub_ps(m, one);
    __m256 z = _mm256_mul_ps(f, f);
    __m256 p = _mm256_set1_ps(7.0376836292e-2f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.1514610310e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.1676998740e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.2420140846e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.4249322787e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.6668057665e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.0000714765e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-2.4999993993e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(3.3333331174e-1f));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(f, z), p);
    y = _mm256_add_ps(y, _mm256_mul_ps(k, _mm256_set1_ps(-2.12194440e-4f)));   /* LN2_LO */
    y = _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, y);
    return _mm256_fmadd_ps(k, _mm256_set1_ps(0.693359375f), _mm256_add_ps(f, y)); /* LN2_HI */
}

__attribute__((always_inline))
static inline void fl_gaussian_block_v8(const float *mean_in, const float *target_in,
                                        const float *var_in, __m256 eps, __m256d constant,
                                        __m256 scale, __m256d w_d, __m256d scale_d, int unit_w,
                                        float *loss_out, float *grad_out, float *grad_var_out,
                                        float *hess_out, __m256d *acc_lo, __m256d *acc_hi,
                                        __m256 *negative)
{
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    __m256 var = _mm256_loadu_ps(var_in);
    *negative = _mm256_or_ps(*negative, _mm256_cmp_ps(var, _mm256_setzero_ps(), _CMP_LT_OQ));
    __m256 v = _mm256_max_ps(eps, var);           /* var < eps: eps (NaN: var) */
    __m256 inv = _mm256_div_ps(one, v);
    __m256 r = _mm256_sub_ps(_mm256_loadu_ps(mean_in), _mm256_loadu_ps(target_in));
    __m256 r_over_v = _mm256_mul_ps(r, inv);
    __m256 r2_over_v = _mm256_mul_ps(r, r_over_v);
    __m256 log_v = fl_logf_normal_v8(v);
    if (grad_out) {
        _mm256_storeu_ps(grad_out, _mm256_mul_ps(scale, r_over_v));
        _mm256_storeu_ps(grad_var_out, _mm256_mul_ps(scale, _mm256_mul_ps(
            _mm256_mul_ps(half, inv), _mm256_sub_ps(one, r2_over_v))));
    }
    if (hess_out)
        _mm256_storeu_ps(hess_out, fl_join_ps(_mm256_mul_pd(scale_d, fl_lo_pd(inv)),
                                              _mm256_mul_pd(scale_d, fl_hi_pd(inv))));
    const __m256d half_d = _mm256_set1_pd(0.5);
    __m256d loss_lo = _mm256_fmadd_pd(half_d, _mm256_add_pd(fl_lo_pd(log_v), fl_lo_pd(r2_over_v)),
                                      constant);
    __m256d loss_hi = _mm256_fmadd_pd(half_d, _mm256_add_pd(fl_hi_pd(log_v), fl_hi_pd(r2_over_v)),
                                      constant);
    if (!unit_w) {
        loss_lo = _mm256_mul_pd(w_d, loss_lo);
        loss_hi = _mm256_mul_pd(w_d, loss_hi);
    }
    if (loss_out)
        _mm256_storeu_ps(loss_out, fl_join_ps(loss_lo, loss_hi));
    *acc_lo = _mm256_add_pd(*acc_lo, loss_lo);
    *acc_hi = _mm256_add_pd(*acc_hi, loss_hi);
}

__attribute__((always_inline))
static inline double fl_gaussian_span_v8(const float *mean, const float *target,
                                         const float *var, ptrdiff_t n, float eps,
                                         double constant, double w, double grad_scale,
                                         float *loss_out, float *grad_out, float *grad_var_out,
                                         float *hess_out, int *invalid)
{
    int unit_w = w == 1.0;
    __m256 eps_v = _mm256_set1_ps(eps), scale = _mm256_set1_ps((float)(w * grad_scale));
    __m256d constant_d = _mm256_set1_pd(constant), w_d = _mm256_set1_pd(w);
    __m256d scale_d = _mm256_set1_pd(w * grad_scale);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    __m256 negative = _mm256_setzero_ps();
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8)
        fl_gaussian_block_v8(mean + j, target + j, var + j, eps_v, constant_d, scale, w_d,
                             scale_d, unit_w, loss_out ? loss_out + j : NULL,
                             grad_out ? grad_out + j : NULL,
                             grad_out ? grad_var_out + j : NULL,
                             hess_out ? hess_out + j : NULL, &acc_lo, &acc_hi, &negative);
    if (j < n) {
        /* the last n - j < 8 elements through padded copies (var 1) */
        float mb[8] = {0}, tb[8] = {0}, vb[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        float lb[8], gb[8], gvb[8], hb[8];
        ptrdiff_t m = n - j, k;
        for (k = 0; k < m; k++) {
            mb[k] = mean[j + k];
            tb[k] = target[j + k];
            vb[k] = var[j + k];
        }
        __m256d tail_lo = _mm256_setzero_pd(), tail_hi = _mm256_setzero_pd();
        fl_gaussian_block_v8(mb, tb, vb, eps_v, constant_d, scale, w_d, scale_d, unit_w, lb,
                             grad_out ? gb : NULL, grad_out ? gvb : NULL,
                             hess_out ? hb : NULL, &tail_lo, &tail_hi, &negative);
        double lanes[8];
        _mm256_storeu_pd(lanes, tail_lo);
        _mm256_storeu_pd(lanes + 4, tail_hi);
        for (k = m; k < 8; k++)
            lanes[k] = 0.0;
        acc_lo = _mm256_add_pd(acc_lo, _mm256_loadu_pd(lanes));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_loadu_pd(lanes + 4));
        for (k = 0; k < m; k++) {
            if (loss_out) loss_out[j + k] = lb[k];
            if (grad_out) {
                grad_out[j + k] = gb[k];
                grad_var_out[j + k] = gvb[k];
            }
            if (hess_out) hess_out[j + k] = hb[k];
        }
    }
    *invalid = _mm256_movemask_ps(negative) != 0;
    __m256d s = _mm256_add_pd(acc_lo, acc_hi);
    double lanes[4];
    _mm256_storeu_pd(lanes, s);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
#endif

static inline double fl_gaussian_span_float(const float *mean, const float *target,
                                            const float *var, ptrdiff_t n, float eps,
                                            double constant, double w, double grad_scale,
                                            float *loss_out, float *grad_out,
                                            float *grad_var_out, float *hess_out, int *invalid)
{
#ifdef FL_HAVE_FAST_ROWS
    /* one loop per case, so that each is compiled without the others' tests */
    if (!loss_out && !hess_out && grad_out)
        return fl_gaussian_span_v8(mean, target, var, n, eps, constant, w, grad_scale, NULL,
                                   grad_out, grad_var_out, NULL, invalid);
    return fl_gaussian_span_v8(mean, target, var, n, eps, constant, w, grad_scale, loss_out,
                               grad_out, grad_var_out, hess_out, invalid);
#else
    (void)mean; (void)target; (void)var; (void)n; (void)eps; (void)constant; (void)w;
    (void)grad_scale; (void)loss_out; (void)grad_out; (void)grad_var_out; (void)hess_out;
    *invalid = 0;
    return 0.0;
#endif
}

/* ------------------------------------------------------------------ spatial cross-entropy planes */

/* Plane loops of fastloss.torch's cross_entropy over (N, C, S) float32
 * scores (_torch_kernels.pyx, block_cross_entropy) for a block of n
 * positions, n a multiple of FL_SPATIAL_GROUP: pass 1 (the maximum and the
 * label's score), pass 2's sums of e (and e at the label) and pass 3 (the
 * gradient), in groups of 16 positions whose per-position values stay in
 * registers across the class planes (the plane-by-plane loops load and store
 * them once per class), each plane's 64-byte line read whole; and for labels
 * without class weights or smoothing the per-position step in one loop
 * (fl_spatial_label_terms_float, with e at the label from pass 2 instead of
 * an exp: 6.4% fewer instructions in the kernel at 32 x 10 x 32 x 32 than
 * the general loops).  The classes go in even chunks of at most
 * FL_SPATIAL_PLANES planes: with S a multiple of 1024 a group's lines all
 * fall in one L1 set, and beyond the set's ways (8 to 12 on the machines we
 * know) the groups lost their gain (measured at 32 x C x 1024: C = 8 and 10
 * 7-9% faster than the plane loops, C = 12, 13 and 16 5-13% slower, until
 * the chunks).  The arithmetic is the plane loops', lane for lane, so the
 * results are theirs to the bit.  x[c * stride + j] is the score of class c
 * at position j, label[j] its class (-1 where ignored).  Compiled in the
 * x86-64-v3 build (FL_SPATIAL_GROUPS is 1 there, 0 in the baseline build,
 * whose callers keep the plane loops).
 *
 * (Pass 2's exps in the same groups, the sums kept in registers, took 8%
 * more time than the plane loop with 16% fewer instructions: a group reads
 * C lines 4 KiB or more apart, one per page, where the plane loop streams
 * 512 contiguous bytes a class.) */
#define FL_SPATIAL_GROUP 16
#define FL_SPATIAL_PLANES 8
#ifdef FL_HAVE_FAST_ROWS
#define FL_SPATIAL_GROUPS 1

/* the lanes of class c among the labels */
FL_INLINE __m256 fl_is_class_v8(__m256i label, ptrdiff_t c)
{
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(label, _mm256_set1_epi32((int)c)));
}

/* the planes of a chunk: C in chunks of at most FL_SPATIAL_PLANES, as even as can be */
FL_INLINE ptrdiff_t fl_spatial_planes_per_chunk(ptrdiff_t n_classes)
{
    ptrdiff_t chunks = (n_classes + FL_SPATIAL_PLANES - 1) / FL_SPATIAL_PLANES;
    return chunks > 1 ? (n_classes + chunks - 1) / chunks : n_classes;
}

/* for each chunk of classes [c0, c1) and each group of positions [j, j + 16) */
#define FL_SPATIAL_FOR_GROUPS(n_classes, n, c0, c1, j)                              \
    for (ptrdiff_t per_ = fl_spatial_planes_per_chunk(n_classes), c0 = 0;            \
         c0 < (n_classes); c0 += per_)                                               \
        for (ptrdiff_t j = 0, c1 = c0 + per_ < (n_classes) ? c0 + per_ : (n_classes); \
             j < (n); j += FL_SPATIAL_GROUP)

/* Pass 1: m[j] = the largest score over the classes (a NaN score is passed
 * over, as x > m is false), label_x[j] = the label's score (0 where ignored). */
static inline void fl_spatial_max_planes_float(const float *x, const int *label,
                                               ptrdiff_t n_classes, ptrdiff_t stride,
                                               ptrdiff_t n, float *m, float *label_x)
{
    FL_SPATIAL_FOR_GROUPS(n_classes, n, c0, c1, j) {
        __m256i lab[2];
        __m256 mv[2], xy[2];
        for (int h = 0; h < 2; h++) {
            lab[h] = _mm256_loadu_si256((const __m256i *)(label + j + 8 * h));
            mv[h] = c0 == 0 ? _mm256_set1_ps(-INFINITY) : _mm256_loadu_ps(m + j + 8 * h);
            xy[h] = c0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(label_x + j + 8 * h);
        }
        for (ptrdiff_t c = c0; c < c1; c++)
            for (int h = 0; h < 2; h++) {
                __m256 xv = _mm256_loadu_ps(x + c * stride + j + 8 * h);
                mv[h] = _mm256_max_ps(xv, mv[h]);                 /* xv > m ? xv : m */
                xy[h] = _mm256_blendv_ps(xy[h], xv, fl_is_class_v8(lab[h], c));
            }
        for (int h = 0; h < 2; h++) {
            _mm256_storeu_ps(m + j + 8 * h, mv[h]);
            _mm256_storeu_ps(label_x + j + 8 * h, xy[h]);
        }
    }
}

/* Pass 2's sums: e_sum[j] = the sum over c in class order, in double, of
 * e[c * stride + j] (the exps the plane loop wrote), and label_e[j] = e at
 * the label (0 where ignored). */
static inline void fl_spatial_sum_planes_float(const float *e, const int *label,
                                               ptrdiff_t n_classes, ptrdiff_t stride,
                                               ptrdiff_t n, double *e_sum, float *label_e)
{
    FL_SPATIAL_FOR_GROUPS(n_classes, n, c0, c1, j) {
        __m256d sum[4];
        __m256i lab[2];
        __m256 ey[2];
        for (int k = 0; k < 4; k++)
            sum[k] = c0 == 0 ? _mm256_setzero_pd() : _mm256_loadu_pd(e_sum + j + 4 * k);
        for (int h = 0; h < 2; h++) {
            lab[h] = _mm256_loadu_si256((const __m256i *)(label + j + 8 * h));
            ey[h] = c0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(label_e + j + 8 * h);
        }
        for (ptrdiff_t c = c0; c < c1; c++)
            for (int h = 0; h < 2; h++) {
                __m256 ev = _mm256_loadu_ps(e + c * stride + j + 8 * h);
                sum[2 * h] = _mm256_add_pd(sum[2 * h],
                                           _mm256_cvtps_pd(_mm256_castps256_ps128(ev)));
                sum[2 * h + 1] = _mm256_add_pd(sum[2 * h + 1],
                                               _mm256_cvtps_pd(_mm256_extractf128_ps(ev, 1)));
                ey[h] = _mm256_blendv_ps(ey[h], ev, fl_is_class_v8(lab[h], c));
            }
        for (int k = 0; k < 4; k++)
            _mm256_storeu_pd(e_sum + j + 4 * k, sum[k]);
        for (int h = 0; h < 2; h++)
            _mm256_storeu_ps(label_e + j + 8 * h, ey[h]);
    }
}

/* The per-position step for labels without class weights or smoothing (the
 * general loops' arithmetic with w_y = 1, eps = 0): with valid = label >= 0,
 *   loss[j] = valid ? log_sum - z_y : 0,  z_y = x_y - m (0 where x_y = m),
 *   coefficient[j] = (float)(valid ? scale / e_sum : 0),
 *   label_grad[j] = (float)(fl(label_e coefficient) - (valid ? scale : 0)). */
static inline void fl_spatial_label_terms_float(const int *label, const float *label_x,
                                                const float *m, const double *log_sum,
                                                const double *e_sum, const float *label_e,
                                                double scale, ptrdiff_t n, double *loss,
                                                float *coefficient, float *label_grad)
{
    const __m256d sc = _mm256_set1_pd(scale);
    for (ptrdiff_t j = 0; j < n; j += 4) {
        __m128i lab = _mm_loadu_si128((const __m128i *)(label + j));
        __m256d valid = _mm256_castsi256_pd(
            _mm256_cvtepi32_epi64(_mm_cmpgt_epi32(lab, _mm_set1_epi32(-1))));
        __m128 xy = _mm_loadu_ps(label_x + j), mj = _mm_loadu_ps(m + j);
        __m256d at_max = _mm256_castsi256_pd(
            _mm256_cvtepi32_epi64(_mm_castps_si128(_mm_cmpeq_ps(xy, mj))));
        __m256d z = _mm256_andnot_pd(at_max, _mm256_sub_pd(_mm256_cvtps_pd(xy),
                                                           _mm256_cvtps_pd(mj)));
        __m256d value = _mm256_sub_pd(_mm256_loadu_pd(log_sum + j), z);
        _mm256_storeu_pd(loss + j, _mm256_and_pd(valid, value));
        __m256d coef = _mm256_and_pd(valid, _mm256_div_pd(sc, _mm256_loadu_pd(e_sum + j)));
        _mm_storeu_ps(coefficient + j, _mm256_cvtpd_ps(coef));
        __m256d product = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(label_e + j)), coef);
        _mm_storeu_ps(label_grad + j,
                      _mm256_cvtpd_ps(_mm256_sub_pd(product, _mm256_and_pd(valid, sc))));
    }
}

/* Pass 3 for labels without class weights or smoothing: out[c * stride + j]
 * = label_grad[j] at the label, else out * coefficient[j] (e's factor,
 * rounded to float). */
static inline void fl_spatial_grad_planes_float(const int *label, const float *coefficient,
                                                const float *label_grad, ptrdiff_t n_classes,
                                                ptrdiff_t stride, ptrdiff_t n, float *out)
{
    FL_SPATIAL_FOR_GROUPS(n_classes, n, c0, c1, j) {
        __m256i lab[2];
        __m256 coef[2], at_label[2];
        for (int h = 0; h < 2; h++) {
            lab[h] = _mm256_loadu_si256((const __m256i *)(label + j + 8 * h));
            coef[h] = _mm256_loadu_ps(coefficient + j + 8 * h);
            at_label[h] = _mm256_loadu_ps(label_grad + j + 8 * h);
        }
        for (ptrdiff_t c = c0; c < c1; c++)
            for (int h = 0; h < 2; h++) {
                float *o = out + c * stride + j + 8 * h;
                __m256 g = _mm256_mul_ps(_mm256_loadu_ps(o), coef[h]);
                _mm256_storeu_ps(o, _mm256_blendv_ps(g, at_label[h],
                                                     fl_is_class_v8(lab[h], c)));
            }
    }
}
#else
#define FL_SPATIAL_GROUPS 0
/* (never called: FL_SPATIAL_GROUPS is 0) */
static inline void fl_spatial_max_planes_float(const float *x, const int *label,
                                               ptrdiff_t n_classes, ptrdiff_t stride,
                                               ptrdiff_t n, float *m, float *label_x)
{
    (void)x; (void)label; (void)n_classes; (void)stride; (void)n; (void)m; (void)label_x;
}
static inline void fl_spatial_sum_planes_float(const float *e, const int *label,
                                               ptrdiff_t n_classes, ptrdiff_t stride,
                                               ptrdiff_t n, double *e_sum, float *label_e)
{
    (void)e; (void)label; (void)n_classes; (void)stride; (void)n; (void)e_sum; (void)label_e;
}
static inline void fl_spatial_label_terms_float(const int *label, const float *label_x,
                                                const float *m, const double *log_sum,
                                                const double *e_sum, const float *label_e,
                                                double scale, ptrdiff_t n, double *loss,
                                                float *coefficient, float *label_grad)
{
    (void)label; (void)label_x; (void)m; (void)log_sum; (void)e_sum; (void)label_e;
    (void)scale; (void)n; (void)loss; (void)coefficient; (void)label_grad;
}
static inline void fl_spatial_grad_planes_float(const int *label, const float *coefficient,
                                                const float *label_grad, ptrdiff_t n_classes,
                                                ptrdiff_t stride, ptrdiff_t n, float *out)
{
    (void)label; (void)coefficient; (void)label_grad; (void)n_classes; (void)stride; (void)n;
    (void)out;
}
#endif

#endif
