/* OpenMP queries that also compile (as one thread) without OpenMP. */
#ifndef FASTLOSS_OPENMP_H
#define FASTLOSS_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
static inline int fl_openmp_enabled(void) { return 1; }
static inline int fl_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int fl_openmp_enabled(void) { return 0; }
static inline int fl_max_threads(void) { return 1; }
#endif

#endif
