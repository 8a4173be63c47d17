"""Build gconv's Cython kernels, with OpenMP where the compiler has it.

The kernel source gconv/kernels/module.pxi is compiled once per instruction-set level, through one stub
.pyx per level: gconv._kernels for the portable baseline and, on x86-64 where the compiler accepts the
flags, gconv._kernels_avx2 (x86-64-v3: AVX2 + FMA) and gconv._kernels_avx512 (x86-64-v4). gconv._dispatch
picks one at import from the CPU's features, so one build serves machines of different generations (no
-march=native anywhere).

Environment switches read at build time:
  GCONV_DEBUG=1            bounds checking and initialisation checks on, -O0 -g (a debug build)
  GCONV_SANITIZE=1         AddressSanitizer and UndefinedBehaviorSanitizer in the kernels, -O1 -g (gcc/clang;
                           import under LD_PRELOAD of the ASan runtime, see .ci/run)
  GCONV_REQUIRE_OPENMP=1   fail the build when the compiler has no OpenMP (CI sets this)
  GCONV_DISABLE_OPENMP=1   build the serial fallback even where OpenMP is available
  GCONV_ISAS=avx512        build only these levels beyond the baseline (comma-separated, may be empty):
                           a faster build while developing; the default builds every level
"""

import os
import platform
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
SANITIZE = _env_flag("GCONV_SANITIZE")
# Out-of-bounds and use-after-free reads, misaligned vector loads, signed overflow in index arithmetic;
# any report aborts (no recovery), so a finding fails the test run that hit it. Python's own CFLAGS carry
# -fwrapv, which defines signed overflow as wrapping and so hides it from UBSan: -fno-wrapv undoes that.
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-fno-wrapv"]

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


# Instruction-set levels beyond the baseline: (module suffix, GCC/clang flags, MSVC flags).
ISA_LEVELS = [
    ("avx2", ["-march=x86-64-v3"], ["/arch:AVX2"]),
    ("avx512", ["-march=x86-64-v4"], ["/arch:AVX512"]),
]
IS_X86_64 = platform.machine().lower() in {"x86_64", "amd64"}
if "GCONV_ISAS" in os.environ:
    _wanted = {name.strip() for name in os.environ["GCONV_ISAS"].split(",") if name.strip()}
    ISA_LEVELS = [level for level in ISA_LEVELS if level[0] in _wanted]


class BuildExtWithOpenMP(build_ext):
    """build_ext that probes the compiler for OpenMP and for each instruction-set level's flags."""

    def _compiles(self, program, compile_args, link_args):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write(program)
            try:
                objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
                self.compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
            except Exception:
                return False
        return True

    def _compiler_has_openmp(self, compile_args, link_args):
        return self._compiles(OPENMP_TEST_PROGRAM, compile_args, link_args)

    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        compile_args, link_args = _openmp_flags(compiler_type)
        use_openmp = not _env_flag("GCONV_DISABLE_OPENMP") and self._compiler_has_openmp(compile_args, link_args)
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
        sanitize_link = []
        if SANITIZE:
            if compiler_type == "msvc":
                raise RuntimeError("GCONV_SANITIZE=1 needs gcc or clang")
            optimise = ["-O1", "-g"] + SANITIZE_FLAGS
            sanitize_link = SANITIZE_FLAGS
        kept = []
        for ext in self.extensions:
            isa_flags = ext.extra_compile_args
            if isa_flags and not self._compiles("int main(void) { return 0; }", isa_flags, []):
                print(f"WARNING: gconv: the compiler refuses {isa_flags}; {ext.name} is not built", file=sys.stderr)
                continue
            ext.extra_compile_args = optimise + compile_args + isa_flags
            ext.extra_link_args = link_args + sanitize_link + ext.extra_link_args
            kept.append(ext)
        self.extensions = kept
        super().build_extensions()


compiler_directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}


def _kernel_extension(name, source, isa_flags=()):
    return Extension(
        name,
        sources=[source],
        include_dirs=[np.get_include(), os.path.abspath("gconv")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=list(isa_flags),
    )


extensions = [_kernel_extension("gconv._kernels", "gconv/_kernels.pyx")]
if IS_X86_64:
    msvc = sys.platform == "win32"
    for suffix, gcc_flags, msvc_flags in ISA_LEVELS:
        # gconv/_kernels_{suffix}.pyx is a stub that includes the one kernel source, so each level is its
        # own module compiled with its own flags
        extensions.append(
            _kernel_extension(
                f"gconv._kernels_{suffix}", f"gconv/_kernels_{suffix}.pyx", msvc_flags if msvc else gcc_flags
            )
        )

setup(
    ext_modules=cythonize(extensions, compiler_directives=compiler_directives),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
