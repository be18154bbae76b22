/* Does this CPU (and its OS) run x86-64-v3 code: AVX, AVX2, FMA, BMI1/2?
 *
 * gcc's and clang's __builtin_cpu_supports read cpuid once and also check
 * that the OS saves the AVX registers (XCR0), so a "yes" is safe to act on.
 * Every CPU with AVX2, FMA and BMI2 also has the rest of x86-64-v3 (F16C,
 * LZCNT, MOVBE): Intel since Haswell, AMD since Excavator. */
#ifndef FASTLOSS_CPU_H
#define FASTLOSS_CPU_H

static inline int fl_cpu_has_x86_64_v3(void)
{
#if (defined(__x86_64__) || defined(__amd64__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2")
        && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi")
        && __builtin_cpu_supports("bmi2");
#else
    return 0;
#endif
}

/* Does this CPU (and its OS, which must save the 512-bit registers) run
 * AVX-512 F, DQ, VL and BW code (Intel since Skylake-SP, AMD since Zen 4)? */
static inline int fl_cpu_has_avx512(void)
{
#if (defined(__x86_64__) || defined(__amd64__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#else
    return 0;
#endif
}

#endif
