"""Converted vtpack checkpoints reproduce the vtpack models.

The reference below restates, independently of vtpack_mm's code, what the paper's release
computes at inference from its own checkpoint keys (official PVT / timm names, plus
``dge.router.gate`` and ``dge.splits`` per block): region means by slicing, an argmax per
region, a loop over the chosen patches, explicit attention, and the delta added back to
the slices. Only facts are taken from the release (key names, shapes, order of operations).
"""
import math

import torch
import torch.nn.functional as F

import vtpack_mm
from vtpack_mm.models.converters import convert_vtpack

C_EPS_PATCH, C_EPS = 1e-5, 1e-6  # vtpack: PatchEmbed LayerNorm default eps; blocks 1e-6


def ln(x, sd, p, eps=C_EPS):
    return F.layer_norm(x, x.shape[-1:], sd[p + '.weight'], sd[p + '.bias'], eps)


def lin(x, sd, p):
    return F.linear(x, sd[p + '.weight'], sd.get(p + '.bias'))


def ref_attention(q, kv_in, sd, p, heads):
    """q (Nq, C) normed queries; kv_in (Nk, C) normed keys/values source."""
    C = q.shape[1]
    d = C // heads
    qh = lin(q, sd, p + '.q').view(-1, heads, d).transpose(0, 1)
    kv = lin(kv_in, sd, p + '.kv').view(-1, 2, heads, d)
    k, v = kv[:, 0].transpose(0, 1), kv[:, 1].transpose(0, 1)
    a = torch.softmax(qh @ k.transpose(1, 2) / math.sqrt(d), -1)
    return lin((a @ v).transpose(0, 1).reshape(-1, C), sd, p + '.proj')


def ref_dge_block(x, H, W, sd, p, heads, sr):
    """One vtpack DGE block at inference for one image: x (N, C) with E extra tokens."""
    N, C = x.shape
    E = N - H * W
    splits = sd[p + '.dge.splits'].tolist()
    S = max(splits)
    grid = x[E:].view(H, W, C)
    queries, slices = [x[e] for e in range(E)], [('extra', e) for e in range(E)]
    for ry in range(H // S):
        for rx in range(W // S):
            region = grid[ry * S:(ry + 1) * S, rx * S:(rx + 1) * S]
            logits = lin(region.mean((0, 1)), sd, p + '.dge.router.gate')
            s = int(splits[int(logits.argmax())])
            side = S // s
            for py in range(s):
                for px in range(s):
                    y0, x0 = ry * S + py * side, rx * S + px * side
                    queries.append(grid[y0:y0 + side, x0:x0 + side].mean((0, 1)))
                    slices.append((y0, x0, side))
    q0 = torch.stack(queries)
    xn = ln(x, sd, p + '.norm1')
    if sr > 1:
        fmap = xn[E:].t().reshape(1, C, H, W)
        red = F.conv2d(fmap, sd[p + '.attn.sr.weight'], sd[p + '.attn.sr.bias'], stride=sr)
        kv_in = ln(red.flatten(2)[0].t(), sd, p + '.attn.norm')
        kv_in = torch.cat([xn[:E], kv_in]) if E else kv_in
    else:
        kv_in = xn
    q1 = q0 + ref_attention(ln(q0, sd, p + '.norm1'), kv_in, sd, p + '.attn', heads)
    h = F.gelu(lin(ln(q1, sd, p + '.norm2'), sd, p + '.mlp.fc1'))
    q1 = q1 + lin(h, sd, p + '.mlp.fc2')
    delta = q1 - q0
    out = x.clone()
    out_grid = out[E:].view(H, W, C)
    for d, where in zip(delta, slices):
        if where[0] == 'extra':
            out[where[1]] += d
        else:
            y0, x0, side = where
            out_grid[y0:y0 + side, x0:x0 + side] += d
    return out


def ref_pvt_dge(sd, img, depths, heads, srs):
    """vtpack PVT(-DGE) classifier features: (stage maps, final normed class token)."""
    x = img
    maps = []
    for i in range(4):
        w = sd[f'patch_embed{i + 1}.proj.weight']
        x = F.conv2d(x, w, sd[f'patch_embed{i + 1}.proj.bias'], stride=w.shape[-1])
        H, W = x.shape[-2:]
        x = ln(x.flatten(2)[0].t(), sd, f'patch_embed{i + 1}.norm', C_EPS_PATCH)
        if i == 3:
            x = torch.cat([sd['cls_token'][0], x])
        x = x + sd[f'pos_embed{i + 1}'][0]
        for j in range(depths[i]):
            x = ref_dge_block(x, H, W, sd, f'block{i + 1}.{j}', heads[i], srs[i])
        E = x.shape[0] - H * W
        if i == 3:
            x = ln(x, sd, 'norm')
            cls = x[0] if E else None
        maps.append(x[E:].t().reshape(1, -1, H, W))
        x = x[E:].t().reshape(1, -1, H, W)
    return maps, cls


def vtpack_state(model_keys_from, seed, splits=(4, 2, 1)):
    """A random checkpoint in vtpack's layout, built by renaming nothing: keys are written
    out from the release's naming scheme for the given arch."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def put(k, *shape, scale=0.2):
        sd[k] = torch.randn(*shape, generator=g) * scale

    dims, heads, mlp, srs, depths = model_keys_from
    cin = 3
    for i in range(4):
        C = dims[i]
        ps = 4 if i == 0 else 2
        put(f'patch_embed{i + 1}.proj.weight', C, cin, ps, ps)
        put(f'patch_embed{i + 1}.proj.bias', C)
        put(f'patch_embed{i + 1}.norm.weight', C, scale=1.0)
        put(f'patch_embed{i + 1}.norm.bias', C)
        cin = C
        for j in range(depths[i]):
            p = f'block{i + 1}.{j}'
            for n in ('norm1', 'norm2'):
                put(f'{p}.{n}.weight', C, scale=1.0)
                put(f'{p}.{n}.bias', C)
            put(f'{p}.attn.q.weight', C, C)
            put(f'{p}.attn.q.bias', C)
            put(f'{p}.attn.kv.weight', 2 * C, C)
            put(f'{p}.attn.kv.bias', 2 * C)
            put(f'{p}.attn.proj.weight', C, C)
            put(f'{p}.attn.proj.bias', C)
            if srs[i] > 1:
                put(f'{p}.attn.sr.weight', C, C, srs[i], srs[i], scale=0.05)
                put(f'{p}.attn.sr.bias', C)
                put(f'{p}.attn.norm.weight', C, scale=1.0)
                put(f'{p}.attn.norm.bias', C)
            put(f'{p}.mlp.fc1.weight', mlp[i] * C, C)
            put(f'{p}.mlp.fc1.bias', mlp[i] * C)
            put(f'{p}.mlp.fc2.weight', C, mlp[i] * C)
            put(f'{p}.mlp.fc2.bias', C)
            put(f'{p}.dge.router.gate.weight', len(splits), C, scale=3.0 / math.sqrt(C))
            put(f'{p}.dge.router.gate.bias', len(splits), scale=0.0)
            sd[f'{p}.dge.splits'] = torch.tensor(splits)
    return sd


def test_converted_vtpack_pvt_dge_reproduces_vtpack():
    arch = ([64, 128, 320, 512], [1, 2, 5, 8], [8, 8, 4, 4], [8, 4, 2, 1], [2, 2, 2, 2])
    size = 128
    sd = vtpack_state(arch, seed=0)
    for i in range(4):
        n = (size // (4 * 2**i))**2 + (1 if i == 3 else 0)
        sd[f'pos_embed{i + 1}'] = torch.randn(1, n, arch[0][i]) * 0.2
    sd['cls_token'] = torch.randn(1, 1, 512) * 0.2
    sd['norm.weight'], sd['norm.bias'] = torch.ones(512), torch.zeros(512)
    sd['head.weight'], sd['head.bias'] = torch.zeros(10, 512), torch.zeros(10)

    sd['norm.weight'] = torch.rand(512) + 0.5
    backbone, head, phis = convert_vtpack(sd, 'pvt')
    assert phis == [1, 2, 4] and set(head) == {'head.weight', 'head.bias'}
    ours = vtpack_mm.PVT(arch='tiny', pretrain_img_size=size, with_cls_token=True,
                         final_norm=True, patch_norm_cfg=dict(type='LN', eps=1e-5),
                         drop_path_rate=0.0, dge_cfg=dict(granularities=phis))
    ours.load_state_dict(backbone, strict=True)
    ours.eval().double()
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    img = torch.randn(1, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        expected, cls = ref_pvt_dge(sd, img, arch[4], arch[1], arch[3])
        got = ours(img)
        ours.out_type = 'cls_token'
        torch.testing.assert_close(ours(img)[-1][0], cls, rtol=1e-9, atol=1e-9)
    choices = torch.cat([r.choice.flatten() for r in ours.last_complexity.routing])
    assert len(choices.unique()) == 3, 'the test needs regions of every granularity'
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-9, atol=1e-9)


def test_converted_vtpack_deit_dge_reproduces_vtpack():
    g = torch.Generator().manual_seed(1)
    C, heads, depth, size = 192, 3, 3, 256
    sd = {}
    full = vtpack_state(([C] * 4, [heads] * 4, [4] * 4, [1] * 4, [depth, 0, 0, 0]), seed=2)
    for k, v in full.items():  # the release's DeiT blocks: blocks.j.* instead of block1.j.*
        if k.startswith('block1.'):
            sd['blocks.' + k[len('block1.'):]] = v
    sd['patch_embed.proj.weight'] = torch.randn(C, 3, 16, 16, generator=g) * 0.05
    sd['patch_embed.proj.bias'] = torch.randn(C, generator=g) * 0.1
    sd['cls_token'] = torch.randn(1, 1, C, generator=g)
    sd['pos_embed'] = torch.randn(1, 1 + 16 * 16, C, generator=g) * 0.2
    sd['norm.weight'], sd['norm.bias'] = torch.rand(C, generator=g) + 0.5, torch.zeros(C)
    sd['head.weight'], sd['head.bias'] = torch.zeros(10, C), torch.zeros(10)
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}

    backbone, head, phis = convert_vtpack(sd, 'deit')
    ours = vtpack_mm.DeiT(arch=dict(embed_dims=C, depth=depth, num_heads=heads, mlp_ratio=4),
                          img_size=size, drop_path_rate=0.0, dge_cfg=dict(granularities=phis))
    ours.load_state_dict(backbone, strict=True)
    ours.eval().double()
    img = torch.randn(1, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        x = F.conv2d(img, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=16)
        x = torch.cat([sd['cls_token'][0], x.flatten(2)[0].t()]) + sd['pos_embed'][0]
        for j in range(depth):
            x = ref_dge_block(x, 16, 16, sd, f'blocks.{j}', heads, 1)
        expected = ln(x, sd, 'norm')[0]
        got = ours(img)[0][0]
    choices = torch.cat([r.choice.flatten() for r in ours.last_complexity.routing])
    assert len(choices.unique()) == 3
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def ref_bilinear(value, xs, ys):
    """value (H, W, d); sample at float coords (token units), zero outside: (..., d)."""
    H, W, d = value.shape
    x0, y0 = xs.floor(), ys.floor()
    out = 0
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wgt = (1 - (xs - xi).abs()) * (1 - (ys - yi).abs())
            inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
            v = value[yi.clamp(0, H - 1).long(), xi.clamp(0, W - 1).long()]
            out = out + (wgt * inside)[..., None] * v
    return out


def test_converted_vtpack_dpvt_reproduces_vtpack():
    g = torch.Generator().manual_seed(3)
    dims, heads, mlp, depths, P, size = [64, 128, 320, 512], [1, 2, 5, 8], [8, 8, 4, 4], [1] * 4, 4, 64
    sd = {}
    cin = 3
    for i in range(4):
        C = dims[i]
        ps = 4 if i == 0 else 2
        n = (size // (4 * 2**i))**2
        sd[f'patch_embed{i + 1}.proj.weight'] = torch.randn(C, cin, ps, ps, generator=g) * 0.1
        sd[f'patch_embed{i + 1}.proj.bias'] = torch.zeros(C)
        sd[f'patch_embed{i + 1}.norm.weight'] = torch.ones(C)
        sd[f'patch_embed{i + 1}.norm.bias'] = torch.zeros(C)
        sd[f'pos_embed{i + 1}'] = torch.randn(1, n, C, generator=g) * 0.2
        cin = C
        p = f'block{i + 1}.0'
        for name, shape in [('norm1', (C, )), ('norm2', (C, )), ('attn.v', (C, C)),
                            ('attn.offsets', (heads[i] * P * 2, C)),
                            ('attn.attn_weight', (heads[i] * P, C)), ('attn.proj', (C, C)),
                            ('mlp.fc1', (mlp[i] * C, C)), ('mlp.fc2', (C, mlp[i] * C))]:
            sd[f'{p}.{name}.weight'] = (torch.randn(*shape, generator=g) * 0.2 if len(shape) == 2
                                        else torch.rand(*shape, generator=g) + 0.5)
            sd[f'{p}.{name}.bias'] = torch.randn(shape[0], generator=g) * (
                1.5 if name == 'attn.offsets' else 0.1)
    sd['norm.weight'], sd['norm.bias'] = torch.ones(512), torch.zeros(512)
    sd = {k: v.double() for k, v in sd.items()}
    backbone, _, phis = convert_vtpack(sd, 'dpvt')
    assert phis is None
    ours = vtpack_mm.DPVT(arch=dict(depths=depths, embed_dims=dims, num_heads=heads,
                                    mlp_ratios=mlp, sr_ratios=[1] * 4),
                          pretrain_img_size=size, final_norm=True, out_type='avg_featmap',
                          patch_norm_cfg=dict(type='LN', eps=1e-5), drop_path_rate=0.0)
    ours.load_state_dict(backbone, strict=True)
    ours.eval().double()
    img = torch.randn(1, 3, size, size, dtype=torch.float64)
    x = img
    with torch.no_grad():
        for i in range(4):
            w = sd[f'patch_embed{i + 1}.proj.weight']
            x = F.conv2d(x, w, sd[f'patch_embed{i + 1}.proj.bias'], stride=w.shape[-1])
            H, W = x.shape[-2:]
            x = ln(x.flatten(2)[0].t(), sd, f'patch_embed{i + 1}.norm', C_EPS_PATCH)
            x = x + sd[f'pos_embed{i + 1}'][0]
            p, h, C = f'block{i + 1}.0', heads[i], dims[i]
            xn = ln(x, sd, p + '.norm1')
            v = lin(xn, sd, p + '.attn.v').view(H, W, h, C // h)
            off = lin(xn, sd, p + '.attn.offsets').view(H * W, h, P, 2)
            wts = torch.softmax(lin(xn, sd, p + '.attn.attn_weight').view(H * W, h, P), -1)
            ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing='ij')
            att = torch.stack([
                (ref_bilinear(v[:, :, j], xs.reshape(-1, 1) + off[:, j, :, 0],
                              ys.reshape(-1, 1) + off[:, j, :, 1]) * wts[:, j, :, None]).sum(1)
                for j in range(h)], 1).reshape(H * W, C)
            x = x + lin(att, sd, p + '.attn.proj')
            x = x + lin(F.gelu(lin(ln(x, sd, p + '.norm2'), sd, p + '.mlp.fc1')), sd, p + '.mlp.fc2')
            if i < 3:
                x = x.t().reshape(1, C, H, W)
        expected = ln(x, sd, 'norm').mean(0)
        got = ours(img)[-1][0]
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
