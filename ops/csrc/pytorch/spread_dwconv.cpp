// Schema of the fused spread / depth-wise convolution / patch mean of the Mix-FFN on
// grained queries (implementation: pytorch/cpu/). Layout conventions as in
// grained_ops.cpp (`meta` (T, 5) rows: image, y0, x0, phi, branch; map tokens only).
//
// h (T, C): one row per query. t2q (B, H * W) int64: the query every map position takes its
// row from (a value outside [0, T): a zero row). weight (k * k, C): the depth-wise kernel,
// tap-major (tap dy * k + dx, the centre at (k / 2, k / 2)); bias (C) or none.
// out[t] = bias + mean over the positions p of query t's patch inside the map of
//          sum over the taps d with p + d inside the map of weight[d] * h[t2q[b, p + d]]
// i.e. the patch means of conv(map), map[p] = h[t2q[b, p]], zero padding: what pooling
// the convolution of the spread rows gives, without writing the map or the convolution.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vtpack_mm, m) {
  m.def("spread_dwconv_pool(Tensor h, Tensor t2q, Tensor meta, Tensor weight, Tensor? bias, "
        "int H, int W, int kernel) -> Tensor");
}
