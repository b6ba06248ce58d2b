// Run-time choice between the two copies of the CPU loops that kernels compile: one for the
// compiler's baseline target, one for AVX2+FMA (GCC on x86-64 only; see GIS_HAVE_AVX2_COPY).
// GIS_CPU_ISA=default in the environment forces the baseline copy (used by the tests).
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GIS_HAVE_AVX2_COPY 1
#endif

namespace gis {
namespace cpu {

inline bool use_avx2() {
#ifdef GIS_HAVE_AVX2_COPY
  static const bool cpu_has = [] {
    __builtin_cpu_init();  // safe to repeat; needed if this runs before libgcc's constructor
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  const char* isa = std::getenv("GIS_CPU_ISA");
  return cpu_has && !(isa != nullptr && std::strcmp(isa, "default") == 0);
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace gis
