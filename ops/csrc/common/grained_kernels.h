// Row kernels of the grained ops, device-agnostic C++ over raw pointers (see
// pytorch/grained_ops.cpp for the op semantics). The CPU ops run them over row ranges.
#pragma once
#include <algorithm>
#include <cstdint>

namespace vtpack_mm {

// acc[0:C] += w * src[0:C]
template <typename scalar_t, typename acc_t>
inline void axpy_row(acc_t* __restrict__ acc, const scalar_t* __restrict__ src, acc_t w,
                     int64_t C) {
  for (int64_t c = 0; c < C; ++c) acc[c] += w * static_cast<acc_t>(src[c]);
}

// Queries [begin, end) of grained_patch_reduce; acc is scratch of C values.
template <typename scalar_t, typename acc_t>
void patch_reduce_rows(const scalar_t* __restrict__ x, const int64_t* __restrict__ meta,
                       const scalar_t* __restrict__ gate, scalar_t* __restrict__ out,
                       acc_t* __restrict__ acc, int64_t begin, int64_t end, int64_t N,
                       int64_t C, int64_t H, int64_t W, int64_t E, int64_t K, bool average) {
  for (int64_t t = begin; t < end; ++t) {
    const int64_t* m = meta + t * 5;
    const int64_t b = m[0], y0 = m[1], x0 = m[2], phi = m[3], k = m[4];
    std::fill(acc, acc + C, acc_t(0));
    int64_t count = 1;
    if (phi == 0) {  // an extra token: token y0
      const int64_t n = b * N + y0;
      axpy_row(acc, x + n * C, gate ? static_cast<acc_t>(gate[n * K + k]) : acc_t(1), C);
    } else {
      const int64_t y1 = std::min(y0 + phi, H), x1 = std::min(x0 + phi, W);
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t n0 = b * N + E + y * W;
        for (int64_t xx = x0; xx < x1; ++xx) {
          const int64_t n = n0 + xx;
          axpy_row(acc, x + n * C, gate ? static_cast<acc_t>(gate[n * K + k]) : acc_t(1), C);
        }
      }
      count = (y1 - y0) * (x1 - x0);
    }
    const acc_t scale = average ? acc_t(1) / static_cast<acc_t>(count) : acc_t(1);
    scalar_t* __restrict__ dst = out + t * C;
    for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<scalar_t>(acc[c] * scale);
  }
}

// Tokens [begin, end) (flat b * N + n) of grained_token_gather; acc is scratch of C values.
template <typename scalar_t, typename acc_t>
void token_gather_rows(const scalar_t* __restrict__ src, const int64_t* __restrict__ t2q,
                       const scalar_t* __restrict__ gate, const scalar_t* __restrict__ scale,
                       const scalar_t* __restrict__ base, scalar_t* __restrict__ out,
                       acc_t* __restrict__ acc, int64_t begin, int64_t end, int64_t BN,
                       int64_t T, int64_t C, int64_t K) {
  for (int64_t i = begin; i < end; ++i) {
    if (base) {
      const scalar_t* __restrict__ row = base + i * C;
      for (int64_t c = 0; c < C; ++c) acc[c] = static_cast<acc_t>(row[c]);
    } else {
      std::fill(acc, acc + C, acc_t(0));
    }
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = t2q[k * BN + i];
      if (t < 0 || t >= T) continue;
      acc_t w = gate ? static_cast<acc_t>(gate[i * K + k]) : acc_t(1);
      if (scale) w *= static_cast<acc_t>(scale[t]);
      axpy_row(acc, src + t * C, w, C);
    }
    scalar_t* __restrict__ dst = out + i * C;
    for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<scalar_t>(acc[c]);
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
