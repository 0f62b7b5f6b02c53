// CPU kernel of spread_dwconv_pool (schema: pytorch/spread_dwconv.cpp). One thread writes
// each query's row, in two steps:
// 1. List the terms of the row: for every tap, the patch's positions are scanned row by row
//    and each run of positions that read the same query becomes one term (query, tap,
//    count). The query's own interior gives one term per tap however large the patch.
// 2. Sum the terms over a block of channels at a time, in a local block the compiler keeps
//    in vector registers, then scale by 1 / patch size and add the bias. The float version
//    of this step is compiled for several instruction sets (common/cpu_simd.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../../common/cpu_checks.h"
#include "../../common/cpu_simd.h"

namespace vtpack_mm {
namespace {

struct Term {
  int64_t row;  // the query whose hidden row is read
  int64_t tap;  // the kernel tap (dy * k + dx)
  float count;  // how many of the patch's positions read it through this tap
};

constexpr int64_t kBlock = 64;  // channels summed at once

// Appends query t's terms to `terms` (cleared first).
inline void list_terms(std::vector<Term>& terms, const int64_t* row_index, int64_t t, int64_t y0,
                       int64_t x0, int64_t y1, int64_t x1, int64_t T, int64_t H, int64_t W,
                       int64_t k) {
  const int64_t pad = k / 2;
  terms.clear();
  for (int64_t dy = 0; dy < k; ++dy) {
    for (int64_t dx = 0; dx < k; ++dx) {
      const int64_t tap = dy * k + dx;
      int64_t self = 0;
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t ny = y + dy - pad;
        if (ny < 0 || ny >= H) continue;
        int64_t run_q = -1, run = 0;
        for (int64_t x = x0; x <= x1; ++x) {
          int64_t q = -1;
          if (x < x1) {
            const int64_t nx = x + dx - pad;
            if (nx >= 0 && nx < W) {
              q = row_index[ny * W + nx];
              if (q < 0 || q >= T) q = -1;
            }
          }
          if (q == run_q && x < x1) {
            ++run;
            continue;
          }
          if (run_q == t) {
            self += run;
          } else if (run_q >= 0) {
            terms.push_back({run_q, tap, static_cast<float>(run)});
          }
          run_q = q;
          run = 1;
        }
      }
      if (self) terms.push_back({t, tap, static_cast<float>(self)});
    }
  }
}

// dst[c] = inv * (sum over terms of count * w[tap, c] * h[row, c]) + bias[c] for the channels
// c in [begin, C), any dtype.
template <typename scalar_t, typename acc_t>
void sum_terms(const Term* terms, int64_t n, const scalar_t* h, const scalar_t* w,
               const scalar_t* bias, acc_t inv, scalar_t* dst, int64_t C, int64_t begin = 0) {
  for (int64_t c0 = begin; c0 < C; c0 += kBlock) {
    const int64_t len = std::min(kBlock, C - c0);
    acc_t acc[kBlock] = {};
    for (int64_t i = 0; i < n; ++i) {
      const scalar_t* src = h + terms[i].row * C + c0;
      const scalar_t* wt = w + terms[i].tap * C + c0;
      const acc_t m = static_cast<acc_t>(terms[i].count);
      for (int64_t c = 0; c < len; ++c)
        acc[c] += m * static_cast<acc_t>(wt[c]) * static_cast<acc_t>(src[c]);
    }
    for (int64_t c = 0; c < len; ++c)
      dst[c0 + c] = static_cast<scalar_t>(acc[c] * inv +
                                          (bias ? static_cast<acc_t>(bias[c0 + c]) : acc_t(0)));
  }
}

// The float case: blocks of 64 channels held in four 16-wide vector variables, which stay
// in registers where the target has them (and are split into narrower ones where not).
typedef float vec16 __attribute__((vector_size(64)));
typedef float vec16_unaligned __attribute__((vector_size(64), aligned(4), may_alias));

VTPACK_MM_SIMD_CLONES
void sum_terms_f32(const Term* terms, int64_t n, const float* h, const float* w,
                   const float* bias, float inv, float* dst, int64_t C) {
  int64_t c0 = 0;
  for (; c0 + kBlock <= C; c0 += kBlock) {
    vec16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t i = 0; i < n; ++i) {
      const vec16_unaligned* src = reinterpret_cast<const vec16_unaligned*>(h + terms[i].row * C + c0);
      const vec16_unaligned* wt = reinterpret_cast<const vec16_unaligned*>(w + terms[i].tap * C + c0);
      const float m = terms[i].count;
      a0 += m * wt[0] * src[0];
      a1 += m * wt[1] * src[1];
      a2 += m * wt[2] * src[2];
      a3 += m * wt[3] * src[3];
    }
    vec16 b[4] = {a0, a1, a2, a3};
    for (int64_t j = 0; j < 4; ++j) {
      vec16 v = b[j] * inv;
      if (bias) v += *reinterpret_cast<const vec16_unaligned*>(bias + c0 + 16 * j);
      *reinterpret_cast<vec16_unaligned*>(dst + c0 + 16 * j) = v;
    }
  }
  if (c0 < C) sum_terms<float, float>(terms, n, h, w, bias, inv, dst, C, c0);
}

template <typename scalar_t>
void spread_dwconv_rows(const scalar_t* h, const int64_t* t2q, const int64_t* meta,
                        const scalar_t* weight, const scalar_t* bias, scalar_t* out,
                        int64_t begin, int64_t end, int64_t T, int64_t C, int64_t H, int64_t W,
                        int64_t k) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<Term> terms;
  terms.reserve(4 * k * k);
  for (int64_t t = begin; t < end; ++t) {
    const int64_t* m = meta + 5 * t;
    const int64_t b = m[0], y0 = m[1], x0 = m[2], phi = m[3];
    const int64_t y1 = std::min(y0 + phi, H), x1 = std::min(x0 + phi, W);
    list_terms(terms, t2q + b * H * W, t, y0, x0, y1, x1, T, H, W, k);
    const acc_t inv = acc_t(1) / static_cast<acc_t>((y1 - y0) * (x1 - x0));
    if constexpr (std::is_same<scalar_t, float>::value) {
      sum_terms_f32(terms.data(), static_cast<int64_t>(terms.size()), h, weight, bias, inv,
                    out + t * C, C);
    } else {
      sum_terms<scalar_t, acc_t>(terms.data(), static_cast<int64_t>(terms.size()), h, weight,
                                 bias, inv, out + t * C, C);
    }
  }
}

at::Tensor spread_dwconv_pool_cpu(const at::Tensor& h, const at::Tensor& t2q,
                                  const at::Tensor& meta, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, int64_t H, int64_t W,
                                  int64_t kernel) {
  check_cpu_contiguous(h, "h");
  check_index(t2q, "t2q");
  check_index(meta, "meta");
  check_like(weight, h, "weight");
  TORCH_CHECK(h.dim() == 2, "h must be (T, C), got ", h.sizes());
  const int64_t T = h.size(0), C = h.size(1);
  TORCH_CHECK(kernel > 0 && kernel % 2 == 1, "kernel must be odd and positive, got ", kernel);
  TORCH_CHECK(weight.sizes() == at::IntArrayRef({kernel * kernel, C}), "weight must be (",
              kernel * kernel, ", ", C, "), got ", weight.sizes());
  TORCH_CHECK(t2q.dim() == 2 && t2q.size(1) == H * W, "t2q must be (B, ", H * W, "), got ",
              t2q.sizes());
  TORCH_CHECK(meta.dim() == 2 && meta.size(0) == T && meta.size(1) == 5,
              "meta must be (T, 5) with T = ", T, ", got ", meta.sizes());
  const int64_t B = t2q.size(0);
  const int64_t* mp = meta.data_ptr<int64_t>();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t* m = mp + 5 * t;
    TORCH_CHECK(m[0] >= 0 && m[0] < B, "query ", t, ": image ", m[0], " out of range");
    TORCH_CHECK(m[3] > 0 && m[1] >= 0 && m[1] < H && m[2] >= 0 && m[2] < W, "query ", t,
                ": patch at (", m[1], ", ", m[2], ") of side ", m[3], " is not a map patch of ",
                "the ", H, "x", W, " map");
  }
  if (bias.has_value()) {
    check_like(*bias, h, "bias");
    TORCH_CHECK(bias->numel() == C, "bias must have ", C, " values");
  }
  auto out = at::empty({T, C}, h.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(),
                                  "spread_dwconv_pool_cpu", [&] {
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const int64_t* ip = t2q.data_ptr<int64_t>();
    const scalar_t* wp = weight.data_ptr<scalar_t>();
    const scalar_t* bp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, T, 16, [=](int64_t begin, int64_t end) {
      spread_dwconv_rows<scalar_t>(hp, ip, mp, wp, bp, op, begin, end, T, C, H, W, kernel);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vtpack_mm, CPU, m) { m.impl("spread_dwconv_pool", &spread_dwconv_pool_cpu); }

}  // namespace vtpack_mm
