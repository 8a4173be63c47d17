/* OpenMP entry points gconv uses, with serial stand-ins so a build without OpenMP still compiles. */
#ifndef GCONV_OMP_SHIM_H
#define GCONV_OMP_SHIM_H

#ifdef _OPENMP
#include <omp.h>
#define GCONV_OPENMP_ENABLED 1
#else
#define GCONV_OPENMP_ENABLED 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline void omp_set_num_threads(int n) { (void)n; }
#endif

#endif
