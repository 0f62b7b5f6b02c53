// Schemas of the sparse-query deformable point attention (implementations:
// pytorch/<device>/).
//
// value (B, H * W, heads, d): the dense value map, row-major positions.
// xy (T, heads, P, 2): sampling locations (x, y) in token units, token centres at integer
//   coordinates; bilinear sampling, positions outside the map read zeros.
// weights (T, heads, P): the points' attention weights.
// batch (T,) int64: the image of every query (any number of queries per image).
// out (T, heads, d) = sum_p weights[t, h, p] * bilinear(value[batch[t], :, h], xy[t, h, p]).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(vtpack_mm, m) {
  m.def("deform_point_attn_forward(Tensor value, Tensor xy, Tensor weights, Tensor batch, "
        "int H, int W) -> Tensor");
  m.def("deform_point_attn_backward(Tensor grad_out, Tensor value, Tensor xy, "
        "Tensor weights, Tensor batch, int H, int W) -> (Tensor, Tensor, Tensor)");
}
