// Qualifiers for the shared row math. Everything in cpp/src/common/ is compiled into every CPU
// instruction-set translation unit and (later) by nvcc, so its functions have internal linkage:
// an inline function compiled with AVX-512 flags must never be picked by the linker for the
// baseline path (STYLE.md §3).
#pragma once

#if defined(__CUDACC__)
#define FXE_HD __host__ __device__
#else
#define FXE_HD
#endif

#define FXE_FN FXE_HD static inline
