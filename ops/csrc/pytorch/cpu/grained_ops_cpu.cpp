// CPU kernels of the grained pooling / un-pooling ops (schemas: pytorch/grained_ops.cpp).
// Every output row is written by one thread: patch_reduce runs over queries, the token
// ops over tokens, so no reduction crosses threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../../common/cpu_checks.h"
#include "../../common/grained_kernels.h"

namespace vtpack_mm {
namespace {

template <typename scalar_t>
const scalar_t* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<scalar_t>() : nullptr;
}

// Every query row must name an image, a position inside the map (or an extra token) and,
// when a gate is given (K >= 0), one of its K branches.
void validate_meta(const at::Tensor& meta, int64_t B, int64_t H, int64_t W, int64_t E,
                   int64_t K) {
  const int64_t* m = meta.data_ptr<int64_t>();
  for (int64_t t = 0; t < meta.size(0); ++t, m += 5) {
    const int64_t b = m[0], y0 = m[1], x0 = m[2], phi = m[3], k = m[4];
    TORCH_CHECK(b >= 0 && b < B, "query ", t, ": image ", b, " out of range");
    TORCH_CHECK(K < 0 || (k >= 0 && k < K), "query ", t, ": branch ", k, " out of range");
    if (phi == 0) {
      TORCH_CHECK(y0 >= 0 && y0 < E, "query ", t, ": extra token ", y0, " out of range");
    } else {
      TORCH_CHECK(phi > 0 && y0 >= 0 && y0 < H && x0 >= 0 && x0 < W, "query ", t,
                  ": patch at (", y0, ", ", x0, ") is outside the ", H, "x", W, " map");
    }
  }
}

// Un-pooled maps at least this large are written with non-temporal stores, which saves
// the read-for-ownership of every output line. 6 MiB: timing the op alone, streamed and
// not, at benchmark_ops.py's PVT-S stage sizes on the 2-core EPYC box (32 MiB L3),
// streaming won for the stage 1 and 2 maps (15.6 and 7.8 MiB) and lost for stage 3's
// (4.9 MiB), which stays in the cache for the next block. (sysconf's L3 size reports
// the host's 256 MiB inside this VM, so the threshold is not derived from it.)
constexpr int64_t kStreamThresholdBytes = int64_t(6) << 20;

at::Tensor grained_patch_reduce_cpu(const at::Tensor& x, const at::Tensor& meta,
                                    const std::optional<at::Tensor>& gate, int64_t H,
                                    int64_t W, int64_t num_extra, bool average) {
  check_cpu_contiguous(x, "x");
  check_index(meta, "meta");
  TORCH_CHECK(x.dim() == 3, "x must be (B, N, C), got ", x.sizes());
  TORCH_CHECK(meta.dim() == 2 && meta.size(1) == 5, "meta must be (T, 5), got ", meta.sizes());
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2), T = meta.size(0);
  TORCH_CHECK(N == num_extra + H * W, "x has ", N, " tokens, expected ", num_extra, " + ",
              H, " x ", W);
  int64_t K = 1;
  if (gate.has_value()) {
    check_like(*gate, x, "gate");
    TORCH_CHECK(gate->dim() == 3 && gate->size(0) == B && gate->size(1) == N,
                "gate must be (B, N, K), got ", gate->sizes());
    K = gate->size(2);
  }
  validate_meta(meta, B, H, W, num_extra, gate.has_value() ? K : -1);
  auto out = at::empty({T, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "grained_patch_reduce_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = optional_data<scalar_t>(gate);
    const int64_t* mp = meta.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, T, 16, [=](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(C);
      patch_reduce_rows<scalar_t, acc_t>(xp, mp, gp, op, acc.data(), begin, end, N, C, H, W,
                                         num_extra, K, average);
    });
  });
  return out;
}

at::Tensor grained_token_gather_cpu(const at::Tensor& src, const at::Tensor& t2q,
                                    const std::optional<at::Tensor>& gate,
                                    const std::optional<at::Tensor>& scale,
                                    const std::optional<at::Tensor>& base) {
  check_cpu_contiguous(src, "src");
  check_index(t2q, "t2q");
  TORCH_CHECK(src.dim() == 2, "src must be (T, C), got ", src.sizes());
  TORCH_CHECK(t2q.dim() == 3, "t2q must be (K, B, N), got ", t2q.sizes());
  const int64_t T = src.size(0), C = src.size(1);
  const int64_t K = t2q.size(0), B = t2q.size(1), N = t2q.size(2);
  if (gate.has_value()) {
    check_like(*gate, src, "gate");
    TORCH_CHECK(gate->sizes() == at::IntArrayRef({B, N, K}), "gate must be (B, N, K) = (",
                B, ", ", N, ", ", K, "), got ", gate->sizes());
  }
  if (scale.has_value()) {
    check_like(*scale, src, "scale");
    TORCH_CHECK(scale->numel() == T, "scale must have one value per query");
  }
  if (base.has_value()) {
    check_like(*base, src, "base");
    TORCH_CHECK(base->sizes() == at::IntArrayRef({B, N, C}), "base must be (B, N, C) = (",
                B, ", ", N, ", ", C, "), got ", base->sizes());
  }
  auto out = at::empty({B, N, C}, src.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(),
                                  "grained_token_gather_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* sp = src.data_ptr<scalar_t>();
    const int64_t* ip = t2q.data_ptr<int64_t>();
    const scalar_t* gp = optional_data<scalar_t>(gate);
    const scalar_t* cp = optional_data<scalar_t>(scale);
    const scalar_t* bp = optional_data<scalar_t>(base);
    scalar_t* op = out.data_ptr<scalar_t>();
    const bool stream = out.nbytes() >= kStreamThresholdBytes;
    at::parallel_for(0, B * N, 256, [=](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(C);
      token_gather_rows<scalar_t, acc_t>(sp, ip, gp, cp, bp, op, acc.data(), begin, end,
                                         B * N, T, C, K, stream);
#if defined(__SSE2__)
      if (stream) _mm_sfence();
#endif
    });
  });
  return out;
}

at::Tensor grained_token_dot_cpu(const at::Tensor& src, const at::Tensor& t2q,
                                 const at::Tensor& other) {
  check_cpu_contiguous(src, "src");
  check_index(t2q, "t2q");
  check_like(other, src, "other");
  const int64_t T = src.size(0), C = src.size(1);
  const int64_t K = t2q.size(0), B = t2q.size(1), N = t2q.size(2);
  TORCH_CHECK(other.sizes() == at::IntArrayRef({B, N, C}), "other must be (B, N, C)");
  auto out = at::empty({B, N, K}, src.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(),
                                  "grained_token_dot_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* sp = src.data_ptr<scalar_t>();
    const int64_t* ip = t2q.data_ptr<int64_t>();
    const scalar_t* ot = other.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 256, [=](int64_t begin, int64_t end) {
      token_dot_rows<scalar_t, acc_t>(sp, ip, ot, op, begin, end, B * N, T, C, K);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(vtpack_mm, CPU, m) {
  m.impl("grained_patch_reduce", &grained_patch_reduce_cpu);
  m.impl("grained_token_gather", &grained_token_gather_cpu);
  m.impl("grained_token_dot", &grained_token_dot_cpu);
}

}  // namespace vtpack_mm
