// CPU kernel of spread_dwconv_pool (schema: pytorch/spread_dwconv.cpp). One thread writes
// each query's row. For every tap, the patch's positions are scanned row by row and runs
// of positions that read the same query are counted: a run of a neighbour costs one
// multiply-add of its row, and the query's own interior, over all taps, one in total.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../../common/cpu_checks.h"

namespace vtpack_mm {
namespace {

// acc[0:C] += w[0:C] * n * src[0:C]
template <typename scalar_t, typename acc_t>
inline void add_tap(acc_t* __restrict__ acc, const scalar_t* __restrict__ w,
                    const scalar_t* __restrict__ src, acc_t n, int64_t C) {
  for (int64_t c = 0; c < C; ++c)
    acc[c] += static_cast<acc_t>(w[c]) * n * static_cast<acc_t>(src[c]);
}

template <typename scalar_t, typename acc_t>
void spread_dwconv_rows(const scalar_t* h, const int64_t* t2q, const int64_t* meta,
                        const scalar_t* weight, const scalar_t* bias, scalar_t* out,
                        acc_t* self_weight, acc_t* acc, int64_t begin, int64_t end, int64_t T,
                        int64_t C, int64_t H, int64_t W, int64_t k) {
  const int64_t pad = k / 2;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t* m = meta + 5 * t;
    const int64_t b = m[0], y0 = m[1], x0 = m[2], phi = m[3];
    const int64_t y1 = std::min(y0 + phi, H), x1 = std::min(x0 + phi, W);
    const int64_t* row_index = t2q + b * H * W;
    std::fill(acc, acc + C, acc_t(0));
    // the taps that read the query's own row (its interior) add up into one weight row,
    // applied once at the end; every run of positions that read another query is added
    // as it ends
    std::fill(self_weight, self_weight + C, acc_t(0));
    for (int64_t dy = 0; dy < k; ++dy) {
      for (int64_t dx = 0; dx < k; ++dx) {
        const scalar_t* w = weight + (dy * k + dx) * C;
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
              add_tap<scalar_t, acc_t>(acc, w, h + run_q * C, static_cast<acc_t>(run), C);
            }
            run_q = q;
            run = 1;
          }
        }
        if (self) {
          const acc_t n = static_cast<acc_t>(self);
          for (int64_t c = 0; c < C; ++c) self_weight[c] += n * static_cast<acc_t>(w[c]);
        }
      }
    }
    const scalar_t* own = h + t * C;
    const acc_t inv = acc_t(1) / static_cast<acc_t>((y1 - y0) * (x1 - x0));
    scalar_t* dst = out + t * C;
    for (int64_t c = 0; c < C; ++c) {
      const acc_t v = (acc[c] + self_weight[c] * static_cast<acc_t>(own[c])) * inv +
                      (bias ? static_cast<acc_t>(bias[c]) : acc_t(0));
      dst[c] = static_cast<scalar_t>(v);
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
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const int64_t* ip = t2q.data_ptr<int64_t>();
    const scalar_t* wp = weight.data_ptr<scalar_t>();
    const scalar_t* bp = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, T, 16, [=](int64_t begin, int64_t end) {
      std::vector<acc_t> self_weight(C), acc(C);
      spread_dwconv_rows<scalar_t, acc_t>(hp, ip, mp, wp, bp, op, self_weight.data(), acc.data(),
                                          begin, end, T, C, H, W, kernel);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vtpack_mm, CPU, m) { m.impl("spread_dwconv_pool", &spread_dwconv_pool_cpu); }

}  // namespace vtpack_mm
