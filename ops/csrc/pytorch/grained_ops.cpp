// Schemas of the grained pooling / un-pooling ops (implementations: pytorch/<device>/).
//
// A query t is described by one row of `meta` (T, 5) int64: image b, top row y0, left
// column x0, granularity phi, branch k. phi = 0 marks an extra token (e.g. a class token):
// then y0 is its index among the E extra tokens. Map token (y, x) is token E + y * W + x.
// `t2q` (K, B, N) int64 gives, per branch, the query each token takes its delta from; a
// value outside [0, T) means none.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vtpack_mm, m) {
  // out[t] = sum over the valid positions of query t's patch of gate[b, n, k] * x[b, n]
  // (gate taken as 1 when absent), divided by the number of positions when `average`.
  m.def("grained_patch_reduce(Tensor x, Tensor meta, Tensor? gate, int H, int W, "
        "int num_extra, bool average) -> Tensor");
  // y[b, n] = base[b, n] + sum_k gate[b, n, k] * scale[t] * src[t], t = t2q[k, b, n]
  // (absent base, gate or scale: 0, 1, 1).
  m.def("grained_token_gather(Tensor src, Tensor t2q, Tensor? gate, Tensor? scale, "
        "Tensor? base) -> Tensor");
  // out[b, n, k] = <src[t2q[k, b, n]], other[b, n]> (0 where t2q points nowhere).
  m.def("grained_token_dot(Tensor src, Tensor t2q, Tensor other) -> Tensor");
}
