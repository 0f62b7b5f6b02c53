// Row kernels of the grained ops, device-agnostic C++ over raw pointers (see
// pytorch/grained_ops.cpp for the op semantics). The CPU ops run them over row ranges.
//
// Every output row is summed in place when the output type is the accumulation type
// (float, double): one pass over the row per input row and no scratch copy. Reduced types
// (half, bfloat16) sum into a float scratch row and convert once at the end.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vtpack_mm {

template <typename scalar_t, typename acc_t>
constexpr bool kSumsInPlace = std::is_same<scalar_t, acc_t>::value;

// Where the sum of an output row is built: the row itself, or the scratch row.
template <typename scalar_t, typename acc_t>
inline acc_t* sum_row(scalar_t* dst, acc_t* scratch) {
  if constexpr (kSumsInPlace<scalar_t, acc_t>) {
    return dst;
  } else {
    return scratch;
  }
}

// dst[0:C] = scale * sum[0:C] (a no-op when the sum already is dst and scale is 1)
template <typename scalar_t, typename acc_t>
inline void store_row(scalar_t* __restrict__ dst, acc_t* sum, acc_t scale, bool scaled,
                      int64_t C) {
  if constexpr (kSumsInPlace<scalar_t, acc_t>) {
    if (scaled)
      for (int64_t c = 0; c < C; ++c) dst[c] *= scale;
  } else {
    for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<scalar_t>(scaled ? sum[c] * scale : sum[c]);
  }
}

// acc[0:C] (= or +=) w * src[0:C]
template <typename scalar_t, typename acc_t>
inline void axpy_row(acc_t* __restrict__ acc, const scalar_t* __restrict__ src, acc_t w,
                     int64_t C, bool first) {
  if (first) {
    for (int64_t c = 0; c < C; ++c) acc[c] = w * static_cast<acc_t>(src[c]);
  } else {
    for (int64_t c = 0; c < C; ++c) acc[c] += w * static_cast<acc_t>(src[c]);
  }
}

// acc[0:C] = base[0:C] + w * src[0:C]
template <typename scalar_t, typename acc_t>
inline void base_axpy_row(acc_t* __restrict__ acc, const scalar_t* __restrict__ base,
                          const scalar_t* __restrict__ src, acc_t w, int64_t C) {
  for (int64_t c = 0; c < C; ++c)
    acc[c] = static_cast<acc_t>(base[c]) + w * static_cast<acc_t>(src[c]);
}

// dst[0:C] = base[0:C] + w * src[0:C] with non-temporal stores (dst is not read back into
// the cache: for outputs larger than the cache, this saves the read-for-ownership).
// Returns false, doing nothing, when the row cannot be streamed.
template <typename scalar_t>
inline bool stream_base_axpy_row(scalar_t* dst, const scalar_t* base, const scalar_t* src,
                                 scalar_t w, int64_t C) {
#if defined(__SSE2__)
  if constexpr (std::is_same<scalar_t, float>::value) {
    if (C % 4 || reinterpret_cast<std::uintptr_t>(dst) % 16) return false;
    const __m128 wv = _mm_set1_ps(w);
    for (int64_t c = 0; c < C; c += 4) {
      const __m128 v = _mm_add_ps(_mm_loadu_ps(base + c), _mm_mul_ps(wv, _mm_loadu_ps(src + c)));
      _mm_stream_ps(dst + c, v);
    }
    return true;
  }
#endif
  return false;
}

// Queries [begin, end) of grained_patch_reduce; scratch holds C values (reduced types).
template <typename scalar_t, typename acc_t>
void patch_reduce_rows(const scalar_t* __restrict__ x, const int64_t* __restrict__ meta,
                       const scalar_t* __restrict__ gate, scalar_t* __restrict__ out,
                       acc_t* __restrict__ scratch, int64_t begin, int64_t end, int64_t N,
                       int64_t C, int64_t H, int64_t W, int64_t E, int64_t K, bool average) {
  for (int64_t t = begin; t < end; ++t) {
    const int64_t* m = meta + t * 5;
    const int64_t b = m[0], y0 = m[1], x0 = m[2], phi = m[3], k = m[4];
    scalar_t* dst = out + t * C;
    acc_t* acc = sum_row(dst, scratch);
    int64_t count = 1;
    if (phi == 0) {  // an extra token: token y0
      const int64_t n = b * N + y0;
      axpy_row(acc, x + n * C, gate ? static_cast<acc_t>(gate[n * K + k]) : acc_t(1), C, true);
    } else {
      const int64_t y1 = std::min(y0 + phi, H), x1 = std::min(x0 + phi, W);
      bool first = true;
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t n0 = b * N + E + y * W;
        for (int64_t xx = x0; xx < x1; ++xx, first = false) {
          const int64_t n = n0 + xx;
          axpy_row(acc, x + n * C, gate ? static_cast<acc_t>(gate[n * K + k]) : acc_t(1), C,
                   first);
        }
      }
      count = (y1 - y0) * (x1 - x0);
    }
    const bool scaled = average && count > 1;
    store_row(dst, acc, acc_t(1) / static_cast<acc_t>(count), scaled, C);
  }
}

// Tokens [begin, end) (flat b * N + n) of grained_token_gather; scratch holds C values.
template <typename scalar_t, typename acc_t>
void token_gather_rows(const scalar_t* __restrict__ src, const int64_t* __restrict__ t2q,
                       const scalar_t* __restrict__ gate, const scalar_t* __restrict__ scale,
                       const scalar_t* __restrict__ base, scalar_t* __restrict__ out,
                       acc_t* __restrict__ scratch, int64_t begin, int64_t end, int64_t BN,
                       int64_t T, int64_t C, int64_t K, bool stream) {
  for (int64_t i = begin; i < end; ++i) {
    scalar_t* dst = out + i * C;
    acc_t* acc = sum_row(dst, scratch);
    const scalar_t* row = base ? base + i * C : nullptr;
    bool empty = true;  // nothing written to acc yet
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = t2q[k * BN + i];
      if (t < 0 || t >= T) continue;
      acc_t w = gate ? static_cast<acc_t>(gate[i * K + k]) : acc_t(1);
      if (scale) w *= static_cast<acc_t>(scale[t]);
      if (empty && row) {
        if (K == 1 && stream && kSumsInPlace<scalar_t, acc_t> &&
            stream_base_axpy_row(dst, row, src + t * C, static_cast<scalar_t>(w), C)) {
          empty = false;
          break;
        }
        base_axpy_row(acc, row, src + t * C, w, C);
      } else {
        axpy_row(acc, src + t * C, w, C, empty);
      }
      empty = false;
    }
    if (empty) {  // no branch reaches this token
      if (row) {
        for (int64_t c = 0; c < C; ++c) acc[c] = static_cast<acc_t>(row[c]);
      } else {
        std::fill(acc, acc + C, acc_t(0));
      }
    }
    store_row(dst, acc, acc_t(1), false, C);
  }
}

// Tokens [begin, end) of grained_token_dot.
template <typename scalar_t, typename acc_t>
void token_dot_rows(const scalar_t* __restrict__ src, const int64_t* __restrict__ t2q,
                    const scalar_t* __restrict__ other, scalar_t* __restrict__ out,
                    int64_t begin, int64_t end, int64_t BN, int64_t T, int64_t C, int64_t K) {
  for (int64_t i = begin; i < end; ++i) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = t2q[k * BN + i];
      acc_t s = 0;
      if (t >= 0 && t < T) {
        const scalar_t* __restrict__ row = src + t * C;
        const scalar_t* __restrict__ o = other + i * C;
        for (int64_t c = 0; c < C; ++c) s += static_cast<acc_t>(row[c]) * static_cast<acc_t>(o[c]);
      }
      out[i * K + k] = static_cast<scalar_t>(s);
    }
  }
}

}  // namespace vtpack_mm
