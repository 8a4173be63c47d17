"""Build gconv's Cython kernels, with OpenMP where the compiler has it.

Environment switches read at build time:
  GCONV_DEBUG=1            bounds checking and initialisation checks on, -O0 -g (a debug build)
  GCONV_REQUIRE_OPENMP=1   fail the build when the compiler has no OpenMP (CI sets this)
  GCONV_DISABLE_OPENMP=1   build the serial fallback even where OpenMP is available
"""
import os
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _env_flag("GCONV_DEBUG")

OPENMP_TEST_PROGRAM = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def _openmp_flags(compiler_type):
    """(compile args, link args) that turn OpenMP on for this compiler family."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs libomp (e.g. from Homebrew) and these flags; CPPFLAGS/LDFLAGS point at it.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


class BuildExtWithOpenMP(build_ext):
    """build_ext that probes the compiler for OpenMP by compiling and linking a tiny program."""

    def _compiler_has_openmp(self, compile_args, link_args):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "omp_probe.c")
            with open(source, "w") as f:
                f.write(OPENMP_TEST_PROGRAM)
            try:
                objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
                self.compiler.link_executable(
                    objects, "omp_probe", output_dir=tmp, extra_postargs=link_args
                )
            except Exception:
                return False
        return True

    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        compile_args, link_args = _openmp_flags(compiler_type)
        use_openmp = not _env_flag("GCONV_DISABLE_OPENMP") and self._compiler_has_openmp(
            compile_args, link_args
        )
        if not use_openmp:
            message = (
                "gconv: building WITHOUT OpenMP; kernels will run on one thread. "
                "Install a compiler with OpenMP support (gcc, or clang with libomp) for parallel kernels."
            )
            if _env_flag("GCONV_REQUIRE_OPENMP"):
                raise RuntimeError(message + " (GCONV_REQUIRE_OPENMP is set)")
            print("WARNING: " + message, file=sys.stderr)
            compile_args, link_args = [], []

        if compiler_type == "msvc":
            optimise = ["/Od", "/Zi"] if DEBUG else ["/O2"]
        else:
            optimise = ["-O0", "-g"] if DEBUG else ["-O3"]
        for ext in self.extensions:
            ext.extra_compile_args = optimise + compile_args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
        super().build_extensions()


compiler_directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

extensions = [
    Extension(
        "gconv._kernels",
        sources=["gconv/_kernels.pyx"],
        include_dirs=[np.get_include(), "gconv"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=compiler_directives),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
