"""Compiled sparse-query deformable point attention against its PyTorch reference (and
the reference against torch's grid_sample)."""
import pytest
import torch
import torch.nn.functional as F

from vtpack_mm.dge.queries import image_index
from vtpack_mm.ops import deform_point_attn, deform_point_attn_reference, use_kernels


def make_case(lengths, H, W, heads, d, P, seed, dtype=torch.float64, spread=2.0,
              device='cpu'):
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), sum(lengths)
    value = torch.randn(B, H * W, heads, d, generator=g, dtype=dtype)
    # locations over and around the map: some points fall outside and read zeros
    lo = torch.tensor([-spread, -spread], dtype=dtype)
    hi = torch.tensor([W - 1 + spread, H - 1 + spread], dtype=dtype)
    xy = lo + (hi - lo) * torch.rand(T, heads, P, 2, generator=g, dtype=dtype)
    weights = torch.randn(T, heads, P, generator=g, dtype=dtype).softmax(-1)
    return value.to(device), xy.to(device), weights.to(device)


def grads(fn, value, xy, weights, lengths, hw):
    """The op's output and the gradients of a fixed linear loss of it; ``lengths`` queries
    per image."""
    inputs = [t.detach().clone().requires_grad_() for t in (value, xy, weights)]
    out = fn(*inputs, image_index(lengths, xy.device), hw)
    ramp = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device)
    loss = (out * ramp.view_as(out)).sum()
    return [out.detach()] + list(torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize('lengths,H,W,heads,d,P', [
    ([7], 5, 6, 1, 8, 4),
    ([3, 11, 1], 7, 4, 2, 5, 4),  # odd channels, a different number of queries per image
    ([20, 9], 9, 13, 5, 3, 2),
    ([4], 1, 1, 3, 1, 1),  # a 1x1 map
])
def test_kernel_equals_reference_fp64(lengths, H, W, heads, d, P):
    value, xy, weights = make_case(lengths, H, W, heads, d, P, seed=H * W)
    with use_kernels(True):
        got = grads(deform_point_attn, value, xy, weights, lengths, (H, W))
    want = grads(deform_point_attn_reference, value, xy, weights, lengths, (H, W))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_integer_locations_read_tokens():
    # a point exactly on a token centre reads that token's value
    value, _, _ = make_case([1], 3, 4, 1, 2, 1, 0)
    xy = torch.tensor([[[[2.0, 1.0]]]], dtype=torch.float64)
    w = torch.ones(1, 1, 1, dtype=torch.float64)
    with use_kernels(True):
        out = deform_point_attn(value, xy, w, image_index([1]), (3, 4))
    torch.testing.assert_close(out[0], value[0, 1 * 4 + 2, 0])


def grid_sample_oracle(value, xy, weights, batch, hw):
    """The op by torch's grid_sample, one query at a time (a second, independent oracle;
    its normalisation rounds, so its side at a token centre is not defined)."""
    B, _, h, d = value.shape
    H, W = hw
    vmap = value.permute(0, 2, 3, 1).reshape(B, h, d, H, W)
    grid = (2 * xy + 1) / xy.new_tensor([W, H]) - 1  # (T, h, P, 2), align_corners=False
    rows = []
    for t in range(xy.shape[0]):
        s = F.grid_sample(vmap[batch[t]], grid[t].unsqueeze(1), align_corners=False)
        rows.append((s[:, :, 0] * weights[t].unsqueeze(1)).sum(-1).reshape(h * d))
    return torch.stack(rows)


def test_reference_equals_grid_sample_off_the_centres():
    lengths = [5, 2, 6]
    value, xy, weights = make_case(lengths, 6, 9, 3, 4, 3, seed=11)
    assert (xy != xy.round()).all()
    want = grads(grid_sample_oracle, value, xy, weights, lengths, (6, 9))
    got = grads(deform_point_attn_reference, value, xy, weights, lengths, (6, 9))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('hw', [(7, 3), (13, 21), (50, 83)])
def test_location_gradient_at_token_centres_is_the_forward_difference(hw, dtype):
    # DPVT's initial points sit on token centres, where bilinear sampling has a kink. There
    # the kernels and the reference both take the difference towards the next token (right,
    # below), also at the map's first row and column and around its border.
    H, W = hw
    g = torch.Generator().manual_seed(H)
    value = torch.randn(1, H * W, 2, 3, generator=g, dtype=dtype)
    ys, xs = torch.meshgrid(torch.arange(-2, H + 2, dtype=dtype),
                            torch.arange(-2, W + 2, dtype=dtype), indexing='ij')
    T = xs.numel()
    xy = torch.stack([xs.flatten(), ys.flatten()], -1).view(T, 1, 1, 2).repeat(1, 2, 1, 1)
    weights = torch.rand(T, 2, 1, generator=g, dtype=dtype)
    # the forward difference of the zero-padded map, per head, times the point weight
    vmap = torch.nn.functional.pad(value.view(H, W, 2, 3), (0, 0, 0, 0, 2, 3, 2, 3))
    ix, iy = xs.flatten().long() + 2, ys.flatten().long() + 2
    ramp = torch.linspace(-1, 1, T * 6, dtype=dtype).view(T, 2, 3)
    dx = ((vmap[iy, ix + 1] - vmap[iy, ix]) * ramp).sum(-1) * weights[..., 0]
    dy = ((vmap[iy + 1, ix] - vmap[iy, ix]) * ramp).sum(-1) * weights[..., 0]
    want = torch.stack([dx, dy], -1).unsqueeze(2)
    eps = 1e-12 if dtype == torch.float64 else 1e-5
    tol = dict(rtol=eps, atol=eps)
    with use_kernels(True):
        kernel = grads(deform_point_attn, value, xy, weights, [T], hw)
    reference = grads(deform_point_attn_reference, value, xy, weights, [T], hw)
    torch.testing.assert_close(kernel[2], want, **tol)
    torch.testing.assert_close(reference[2], want, **tol)
    for a, b in zip(kernel, reference):
        torch.testing.assert_close(a, b, **tol)


def test_gradcheck_double():
    lengths = [2, 3]
    value, xy, weights = make_case(lengths, 4, 5, 2, 3, 2, 7)
    inputs = [t.requires_grad_() for t in (value, xy, weights)]
    with use_kernels(True):
        assert torch.autograd.gradcheck(
            lambda v, p, w: deform_point_attn(v, p, w, image_index(lengths), (4, 5)), inputs)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_low_precision_close_to_fp64(dtype):
    lengths = [6, 2]
    value, xy, weights = make_case(lengths, 6, 7, 2, 8, 4, 3)
    want = deform_point_attn_reference(value, xy, weights, image_index(lengths), (6, 7))
    with use_kernels(True):
        got = deform_point_attn(value.to(dtype), xy.to(dtype), weights.to(dtype),
                                image_index(lengths), (6, 7))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=3e-2, atol=5e-2)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize('kernels', [True, False])
def test_a_non_finite_image_leaves_the_others_alone(kernels):
    # neighbours outside the map read nothing: an inf in image 0's map, or a NaN location
    # in image 1, changes no other image's output nor the gradient of its map
    lengths = [4, 5]
    value, xy, weights = make_case(lengths, 4, 5, 2, 3, 2, seed=5, spread=6.0)
    with use_kernels(kernels):
        clean = grads(deform_point_attn, value, xy, weights, lengths, (4, 5))
        bad_value = value.clone()
        bad_value[0, 0, 0, 0] = float('inf')
        out = grads(deform_point_attn, bad_value, xy, weights, lengths, (4, 5))
        torch.testing.assert_close(out[0][4:], clean[0][4:])
        bad_xy = xy.clone()
        bad_xy[6, 1, 0] = float('nan')
        out = grads(deform_point_attn, value, bad_xy, weights, lengths, (4, 5))
    torch.testing.assert_close(out[0][:4], clean[0][:4])
    torch.testing.assert_close(out[1][0], clean[1][0])


@pytest.mark.parametrize('kernels', [True, False])
def test_far_and_non_finite_locations(kernels):
    # far away (beyond int64 as well): reads zero; NaN or inf: reads NaN in that query's
    # head, never a silent zero, and leaves the other queries alone
    value, xy, weights = make_case([5], 3, 4, 2, 3, 1, seed=2)
    far = xy.clone()
    far[0, 0, 0] = torch.tensor([1e30, 2.0], dtype=far.dtype)
    far[1, 1, 0] = torch.tensor([-1e19, -1e19], dtype=far.dtype)
    bad = xy.clone()
    bad[2, 0, 0, 0] = float('nan')
    bad[3, 1, 0, 1] = float('inf')
    with use_kernels(kernels):
        clean = deform_point_attn(value, xy, weights, image_index([5]), (3, 4)).view(5, 2, 3)
        out = deform_point_attn(value, far, weights, image_index([5]), (3, 4)).view(5, 2, 3)
        assert (out[0, 0] == 0).all() and (out[1, 1] == 0).all()
        torch.testing.assert_close(out[2:], clean[2:])
        out = deform_point_attn(value, bad, weights, image_index([5]), (3, 4)).view(5, 2, 3)
    assert out[2, 0].isnan().all() and out[3, 1].isnan().all()
    assert not out[2, 1].isnan().any() and not out[3, 0].isnan().any()
    torch.testing.assert_close(out[[0, 1, 4]], clean[[0, 1, 4]])


def test_an_index_that_does_not_cover_the_queries_is_named():
    value, xy, weights = make_case([2, 3], 3, 3, 2, 4, 2, 0)
    with pytest.raises(ValueError, match=r'batch gives the image of 1 queries; there are 5'):
        deform_point_attn_reference(value, xy, weights, image_index([1, 0]), (3, 3))


def test_bad_shapes_are_named():
    value, xy, weights = make_case([2], 3, 3, 2, 4, 2, 0, dtype=torch.float32)
    batch = torch.zeros(2, dtype=torch.long)
    with pytest.raises(RuntimeError, match=r'value must be \(B, 4 \* 4'):
        torch.ops.vtpack_mm.deform_point_attn_forward(value, xy, weights, batch, 4, 4)
    with pytest.raises(RuntimeError, match='image 3 out of range'):
        torch.ops.vtpack_mm.deform_point_attn_forward(value, xy, weights, batch + 3, 3, 3)
