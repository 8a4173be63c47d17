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

/* Path of the shared library that omp_get_max_threads resolved to in this process, "" when unknown or
   without OpenMP. Asking the dynamic linker where the symbol this module really calls lives tells the
   runtime apart (GNU libgomp, LLVM libomp, Intel libiomp5) even when several are loaded (torch brings
   its own). dladdr is in glibc (with _GNU_SOURCE, which Python.h defines), musl and macOS. */
#if GCONV_OPENMP_ENABLED && (defined(__linux__) || defined(__APPLE__) || defined(__FreeBSD__))
#include <dlfcn.h>
static inline const char* gconv_openmp_library(void) {
    Dl_info info;
    /* POSIX lets a function's address pass through void* */
    if (dladdr((void*)omp_get_max_threads, &info) && info.dli_fname != NULL)
        return info.dli_fname;
    return "";
}
#else
static inline const char* gconv_openmp_library(void) { return ""; }
#endif

#endif
