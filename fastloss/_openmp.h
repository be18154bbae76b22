/* OpenMP queries that also compile (as one thread) without OpenMP. */
#ifndef FASTLOSS_OPENMP_H
#define FASTLOSS_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
static inline int fl_openmp_enabled(void) { return 1; }
static inline int fl_max_threads(void) { return omp_get_max_threads(); }
static inline int fl_openmp_version(void) { return _OPENMP; }  /* yyyymm of the spec */
/* The number of threads a parallel region of n_threads really gets. */
static inline int fl_team_size(int n_threads) {
    int size = 1;
    #pragma omp parallel num_threads(n_threads)
    {
        #pragma omp single
        size = omp_get_num_threads();
    }
    return size;
}
#else
static inline int fl_openmp_enabled(void) { return 0; }
static inline int fl_max_threads(void) { return 1; }
static inline int fl_openmp_version(void) { return 0; }
static inline int fl_team_size(int n_threads) { (void)n_threads; return 1; }
#endif

/* The OpenMP runtime the compiler links: each compiler ships its own. */
#if defined(__clang__)
#define FL_OPENMP_RUNTIME "libomp (LLVM)"
#elif defined(__GNUC__)
#define FL_OPENMP_RUNTIME "libgomp (GNU)"
#elif defined(_MSC_VER)
#define FL_OPENMP_RUNTIME "vcomp (MSVC)"
#else
#define FL_OPENMP_RUNTIME "unknown"
#endif

#endif
