// Runtime choice of the widest vector instructions the CPU has, for the hot loops of the
// CPU kernels. The extension is compiled for the baseline x86-64 (SSE2) so that it loads on
// any machine; a function marked VTPACK_MM_SIMD_CLONES is compiled once per listed target
// and the dynamic loader picks the best for the running CPU (GCC function multi-versioning,
// resolved once at load time). Elsewhere (clang, non-x86) the mark is empty.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VTPACK_MM_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VTPACK_MM_SIMD_CLONES
#endif
