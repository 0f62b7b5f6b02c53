// CPU kernels of the sparse-query deformable point attention (schemas:
// pytorch/deform_point_attn.cpp). The forward runs over (query, head) pairs; the backward
// scatters value gradients into one buffer per thread, summed at the end.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "../../common/cpu_checks.h"

namespace vtpack_mm {
namespace {

// The four neighbours of (x, y) and their bilinear weights; a neighbour outside the map
// gets offset -1 (it reads zero and receives no gradient). A non-finite location has no
// neighbour and NaN weights (finite == false).
template <typename acc_t>
struct Bilinear {
  int64_t offset[4];
  acc_t weight[4];
  acc_t fx, fy;
  bool finite;

  Bilinear(acc_t x, acc_t y, int64_t H, int64_t W) {
    finite = std::isfinite(x) && std::isfinite(y);
    const acc_t xf = std::floor(x), yf = std::floor(y);
    // the corner kept within [-2, W] x [-2, H], so that the cast is defined for any
    // location: beyond, every neighbour is outside the map either way
    const int64_t xi = finite ? static_cast<int64_t>(std::min(std::max(xf, acc_t(-2)),
                                                              acc_t(W))) : -2;
    const int64_t yi = finite ? static_cast<int64_t>(std::min(std::max(yf, acc_t(-2)),
                                                              acc_t(H))) : -2;
    fx = x - xf;
    fy = y - yf;
    const int64_t xs[4] = {xi, xi + 1, xi, xi + 1};
    const int64_t ys[4] = {yi, yi, yi + 1, yi + 1};
    const acc_t ws[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
    for (int i = 0; i < 4; ++i) {
      const bool inside = xs[i] >= 0 && xs[i] < W && ys[i] >= 0 && ys[i] < H;
      offset[i] = inside ? ys[i] * W + xs[i] : -1;
      weight[i] = ws[i];
    }
  }
};

void check_args(const at::Tensor& value, const at::Tensor& xy, const at::Tensor& weights,
                const at::Tensor& batch, int64_t H, int64_t W) {
  check_cpu_contiguous(value, "value");
  check_like(xy, value, "xy");
  check_like(weights, value, "weights");
  check_index(batch, "batch");
  TORCH_CHECK(value.dim() == 4 && value.size(1) == H * W, "value must be (B, ", H, " * ",
              W, ", heads, d), got ", value.sizes());
  const int64_t T = xy.size(0), heads = value.size(2);
  TORCH_CHECK(xy.dim() == 4 && xy.size(1) == heads && xy.size(3) == 2,
              "xy must be (T, heads, P, 2), got ", xy.sizes());
  TORCH_CHECK(weights.sizes() == xy.sizes().slice(0, 3), "weights must be (T, heads, P), got ",
              weights.sizes());
  TORCH_CHECK(batch.dim() == 1 && batch.size(0) == T, "batch must be (T,)");
}

at::Tensor deform_point_attn_forward_cpu(const at::Tensor& value, const at::Tensor& xy,
                                         const at::Tensor& weights, const at::Tensor& batch,
                                         int64_t H, int64_t W) {
  check_args(value, xy, weights, batch, H, W);
  const int64_t B = value.size(0), heads = value.size(2), d = value.size(3);
  const int64_t T = xy.size(0), P = xy.size(2);
  auto out = at::empty({T, heads, d}, value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "deform_point_attn_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* vp = value.data_ptr<scalar_t>();
    const scalar_t* xp = xy.data_ptr<scalar_t>();
    const scalar_t* wp = weights.data_ptr<scalar_t>();
    const int64_t* bp = batch.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, T * heads, 16, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(d);
      for (int64_t i = begin; i < end; ++i) {
        const int64_t t = i / heads, h = i % heads, b = bp[t];
        TORCH_CHECK(b >= 0 && b < B, "query ", t, ": image ", b, " out of range");
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t p = 0; p < P; ++p) {
          const int64_t j = i * P + p;
          const Bilinear<acc_t> s{acc_t(xp[2 * j]), acc_t(xp[2 * j + 1]), H, W};
          const acc_t a = acc_t(wp[j]);
          if (!s.finite) {  // reads NaN, as the PyTorch reference does: no silent zero
            std::fill(acc.begin(), acc.end(), std::numeric_limits<acc_t>::quiet_NaN());
            continue;
          }
          for (int c4 = 0; c4 < 4; ++c4) {
            if (s.offset[c4] < 0) continue;
            const acc_t w = a * s.weight[c4];
            const scalar_t* v = vp + ((b * H * W + s.offset[c4]) * heads + h) * d;
            for (int64_t c = 0; c < d; ++c) acc[c] += w * acc_t(v[c]);
          }
        }
        scalar_t* dst = op + i * d;
        for (int64_t c = 0; c < d; ++c) dst[c] = scalar_t(acc[c]);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> deform_point_attn_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& value, const at::Tensor& xy,
    const at::Tensor& weights, const at::Tensor& batch, int64_t H, int64_t W) {
  check_args(value, xy, weights, batch, H, W);
  check_like(grad_out, value, "grad_out");
  const int64_t B = value.size(0), heads = value.size(2), d = value.size(3);
  const int64_t T = xy.size(0), P = xy.size(2);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({T, heads, d}),
              "grad_out must be (T, heads, d)");
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(),
                                                                   T * heads));
  // value gradients accumulate in the op-math type, one buffer per thread
  const auto acc_type = at::toOpMathType(value.scalar_type());
  auto grad_value_parts = at::zeros({threads, B, H * W, heads, d},
                                    value.options().dtype(acc_type));
  auto grad_xy = at::empty_like(xy);
  auto grad_weights = at::empty_like(weights);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "deform_point_attn_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = grad_out.data_ptr<scalar_t>();
    const scalar_t* vp = value.data_ptr<scalar_t>();
    const scalar_t* xp = xy.data_ptr<scalar_t>();
    const scalar_t* wp = weights.data_ptr<scalar_t>();
    const int64_t* bp = batch.data_ptr<int64_t>();
    acc_t* gvp = grad_value_parts.data_ptr<acc_t>();
    scalar_t* gxp = grad_xy.data_ptr<scalar_t>();
    scalar_t* gwp = grad_weights.data_ptr<scalar_t>();
    const int64_t part = B * H * W * heads * d;
    const int64_t chunk = (T * heads + threads - 1) / threads;
    at::parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
      for (int64_t r = first; r < last; ++r) {
        acc_t* gv = gvp + r * part;
        const int64_t end = std::min(T * heads, (r + 1) * chunk);
        for (int64_t i = r * chunk; i < end; ++i) {
          const int64_t t = i / heads, h = i % heads, b = bp[t];
          TORCH_CHECK(b >= 0 && b < B, "query ", t, ": image ", b, " out of range");
          const scalar_t* g = gp + i * d;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t j = i * P + p;
            const Bilinear<acc_t> s{acc_t(xp[2 * j]), acc_t(xp[2 * j + 1]), H, W};
            const acc_t a = acc_t(wp[j]);
            // <grad, corner value> of each neighbour (0 outside the map)
            acc_t dot[4] = {0, 0, 0, 0};
            for (int c4 = 0; c4 < 4; ++c4) {
              if (s.offset[c4] < 0) continue;
              const int64_t off = ((b * H * W + s.offset[c4]) * heads + h) * d;
              const scalar_t* v = vp + off;
              acc_t* gvo = gv + off;
              const acc_t w = a * s.weight[c4];
              acc_t sum = 0;
              for (int64_t c = 0; c < d; ++c) {
                const acc_t gc = acc_t(g[c]);
                sum += gc * acc_t(v[c]);
                gvo[c] += w * gc;
              }
              dot[c4] = sum;
            }
            gwp[j] = scalar_t(s.weight[0] * dot[0] + s.weight[1] * dot[1] +
                              s.weight[2] * dot[2] + s.weight[3] * dot[3]);
            // corners: 0 (x0, y0), 1 (x1, y0), 2 (x0, y1), 3 (x1, y1)
            const acc_t dx = (1 - s.fy) * (dot[1] - dot[0]) + s.fy * (dot[3] - dot[2]);
            const acc_t dy = (1 - s.fx) * (dot[2] - dot[0]) + s.fx * (dot[3] - dot[1]);
            gxp[2 * j] = scalar_t(a * dx);
            gxp[2 * j + 1] = scalar_t(a * dy);
          }
        }
      }
    });
  });
  auto grad_value = grad_value_parts.sum(0).to(value.scalar_type());
  return {grad_value, grad_xy, grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(vtpack_mm, CPU, m) {
  m.impl("deform_point_attn_forward", &deform_point_attn_forward_cpu);
  m.impl("deform_point_attn_backward", &deform_point_attn_backward_cpu);
}

}  // namespace vtpack_mm
