"""The compiled ops vs their PyTorch references vs other library compositions, per stage.

    python tools/analysis_tools/benchmark_ops.py [--size 800 1280] [--threads 2]
        [--warmup 2] [--repeats 11] [--stages 0 1 2 3] [--attn-batch 4] [--out results.json]

At the stage sizes of PVT-S / DPVT-S for a ``--size`` input (batch 1, strides 4, 8, 16,
32), with routing drawn at random (phi = 1, 2, 4 with probabilities 0.45, 0.3, 0.25,
beta about 0.5), times forward (inference mode) and forward + backward of:

  pool       grained pooling: kernel / reference (avg_pool2d per granularity + gather) /
             index_add (scatter-mean of the tokens by their query)
  unpool     grained un-pooling with the residual: kernel / reference (gather + add) /
             add (a plain ``torch.add`` of two maps of the same size: the memory traffic
             of reading the residual and writing a new map, which any out-of-place
             un-pooling must at least move; forward only)
  deform     sparse-query deformable point attention, 4 points per head: kernel /
             reference (embedding_bag) / mmcv (mmcv's multi_scale_deformable_attn_pytorch,
             one level)
  attention  softmax attention of the sparse queries over the dense keys/values (SDPA), for
             a batch of --attn-batch images routed differently (so their query counts
             differ): per_image (one SDPA call per image, the CPU path) / padded (one
             batched call on queries padded to the longest image)
  overhead   the DGE's own work in a PVT-S layer (router, query layout, pooling,
             un-pooling) as a share of that layer's time (compiled ops in use)

Variants are timed round-robin; speed-ups are medians of per-round ratios.
"""
import argparse
import json
import platform

import torch

from vtpack_mm.analysis.latency import paired_speedups, summarize, time_variants
from vtpack_mm.dge import sparse_queries
from vtpack_mm.dge.router import region_mean
from vtpack_mm.models.layers import EncoderLayer
from vtpack_mm.models.layers.attention import attend_padded, attend_per_image
from vtpack_mm.ops import (deform_point_attn, deform_point_attn_reference, has_kernel,
                           use_kernels)

DIMS, HEADS, MLP, SR = [64, 128, 320, 512], [1, 2, 5, 8], [8, 8, 4, 4], [8, 4, 2, 1]
PHIS, PROBS = (1, 2, 4), (0.45, 0.3, 0.25)


def routed_queries(geo, g):
    choice = torch.multinomial(torch.tensor(PROBS), geo.num_regions, replacement=True,
                               generator=g)
    return sparse_queries(geo, choice[None], 0)


def index_add_pool(x, qs):
    """Grained pooling as a scatter-mean of the tokens by their query (a second library
    composition)."""
    B, N, C = x.shape
    t2q = qs.token_to_query[0].reshape(-1)
    rows = qs.num_queries + int(qs.has_dump)
    sums = x.new_zeros(rows, C).index_add_(0, t2q, x.reshape(B * N, C))
    counts = torch.bincount(t2q, minlength=rows).to(x.dtype)
    return (sums / counts.clamp(min=1)[:, None])[:qs.num_queries]


def mmcv_deform(value, xy, weights, hw):
    """mmcv's PyTorch multi-scale deformable attention, one level, batch 1."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    H, W = hw
    loc = (xy + 0.5) / xy.new_tensor([W, H])  # mmcv's normalised locations
    return multi_scale_deformable_attn_pytorch(
        value, torch.tensor([[H, W]]), loc[None, :, :, None], weights[None, :, :, None])


def with_backward(fn, *inputs):
    """Forward + backward of ``fn`` on fresh leaf copies of ``inputs``."""
    def run():
        leaves = [t.detach().requires_grad_() for t in inputs]
        fn(*leaves).sum().backward()
    return run


def compare(name, variants, args, grad=False, base='kernel'):
    times = time_variants(variants, args.warmup, args.repeats, grad=grad)
    ratios = paired_speedups(times, base)
    stats = {k: summarize(v) for k, v in times.items()}
    cells = '  '.join(f'{k} {1e3 * s["median"]:8.2f} ms ({1 / ratios[k]:5.2f}x)'
                      for k, s in stats.items())
    print(f'  {name:<16s} {cells}')
    return dict(stats=stats, speedup_of_base={k: 1 / r for k, r in ratios.items()},
                times=times)


def bench_stage(i, hw, args, g):
    C, h = DIMS[i], HEADS[i]
    H, W = hw
    layer = EncoderLayer(C, h, C * MLP[i], attn_cfg=dict(type='sra', sr_ratio=SR[i]),
                         dge_cfg=dict(granularities=PHIS)).eval()
    dge = layer.dge
    geo = dge.geometry(hw, 'cpu')
    qs = routed_queries(geo, g)
    x = torch.randn(1, H * W, C, generator=g)
    delta = torch.randn(qs.num_queries, C, generator=g)
    other = torch.randn_like(x)
    res = dict(hw=hw, channels=C, heads=h, beta=qs.num_queries / (H * W))
    print(f'stage {i + 1}: {H}x{W}, C={C}, heads={h}, queries {qs.num_queries} '
          f'(beta {res["beta"]:.2f})')

    def ref(fn):
        def run(*a):
            with use_kernels(False):
                return fn(*a)
        return run

    res['pool'] = compare('pool', dict(
        kernel=lambda: qs.pool(x), reference=lambda: ref(qs.pool)(x),
        index_add=lambda: index_add_pool(x, qs)), args)
    res['pool+grad'] = compare('pool+backward', dict(
        kernel=with_backward(qs.pool, x), reference=with_backward(ref(qs.pool), x),
        index_add=with_backward(lambda a: index_add_pool(a, qs), x)), args, grad=True)
    res['unpool'] = compare('unpool', dict(
        kernel=lambda: qs.unpool(x, delta), reference=lambda: ref(qs.unpool)(x, delta),
        add=lambda: torch.add(x, other)), args)
    res['unpool+grad'] = compare('unpool+backward', dict(
        kernel=with_backward(qs.unpool, x, delta),
        reference=with_backward(ref(qs.unpool), x, delta)), args, grad=True)

    # deformable point attention at DPVT-S's size: value map, pooled queries
    P, d = 4, C // h
    value = torch.randn(1, H * W, h, d, generator=g)
    ref_xy = qs.query_xy('cpu')
    xy = ref_xy[:, None, None] + 3 * torch.randn(qs.num_queries, h, P, 2, generator=g)
    w = torch.randn(qs.num_queries, h, P, generator=g).softmax(-1)
    batch = qs.batch_index('cpu')
    res['deform'] = compare('deform', dict(
        kernel=lambda: deform_point_attn(value, xy, w, batch, hw),
        reference=lambda: deform_point_attn_reference(value, xy, w, batch, hw),
        mmcv=lambda: mmcv_deform(value, xy, w, hw)), args)
    res['deform+grad'] = compare('deform+backward', dict(
        kernel=with_backward(lambda v, p, a: deform_point_attn(v, p, a, batch, hw),
                             value, xy, w),
        reference=with_backward(
            lambda v, p, a: deform_point_attn_reference(v, p, a, batch, hw), value, xy, w),
        mmcv=with_backward(lambda v, p, a: mmcv_deform(v, p, a, hw), value, xy, w)),
        args, grad=True)

    # attention of a batch whose images have different query counts
    if args.attn_batch > 1:
        B = args.attn_batch
        probs = torch.linspace(0.85, 0.25, B)  # share of regions at phi = 1, per image
        choice = torch.stack([torch.multinomial(
            torch.tensor([p, (1 - p) / 2, (1 - p) / 2]), geo.num_regions, replacement=True,
            generator=g) for p in probs.tolist()])
        qb = sparse_queries(geo, choice, 0)
        xb = torch.randn(B, H * W, C, generator=g)
        with torch.no_grad():
            k, v = layer.attn.keys_values(xb, hw)
        qb_in = torch.randn(qb.num_queries, C, generator=g)
        print(f'  attention batch {B}: queries per image {qb.lengths}')
        res['attention'] = compare('attention', dict(
            per_image=lambda: attend_per_image(qb_in, qb, k, v),
            padded=lambda: attend_padded(qb_in, qb, k, v)), args, base='per_image')
        res['attention+grad'] = compare('attention+backward', dict(
            per_image=with_backward(lambda a: attend_per_image(a, qb, k, v), qb_in),
            padded=with_backward(lambda a: attend_padded(a, qb, k, v), qb_in)), args,
            grad=True, base='per_image')

    # the DGE's own work inside a PVT-S layer, routed as above
    dge.force_choice = qs.region_choice

    def overhead():
        logits = dge.router(region_mean(x, geo))
        queries = sparse_queries(geo, logits.argmax(-1), 0)
        queries.unpool(x, queries.pool(x))

    times = time_variants(dict(layer=lambda: layer(x, hw), overhead=overhead), args.warmup,
                          args.repeats)
    share = [o / t for o, t in zip(times['overhead'], times['layer'])]
    res['overhead_share'] = sorted(share)[len(share) // 2]
    res['overhead_times'] = times
    print(f'  DGE overhead: {1e3 * summarize(times["overhead"])["median"]:.2f} ms of a '
          f'{1e3 * summarize(times["layer"])["median"]:.2f} ms layer '
          f'({100 * res["overhead_share"]:.1f}%)')
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, nargs=2, default=[800, 1280])
    parser.add_argument('--threads', type=int)
    parser.add_argument('--stages', type=int, nargs='+', default=[0, 1, 2, 3])
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=11)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--attn-batch', type=int, default=4,
                        help='images in the attention comparison (1: skip it)')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not has_kernel(torch.zeros(1)):
        raise SystemExit('the compiled ops are not built (pip install --no-build-isolation '
                         '--use-pep517 -e .); nothing to compare')
    g = torch.Generator().manual_seed(args.seed)
    results = dict(processor=platform.processor() or platform.machine(),
                   threads=torch.get_num_threads(), size=args.size, stages={})
    print(f'{args.size[0]}x{args.size[1]} input, batch 1, CPU, {torch.get_num_threads()} '
          'threads; each cell: median time (speed-up of the first variant over it)')
    for i in args.stages:
        hw = (args.size[0] // 2**(i + 2), args.size[1] // 2**(i + 2))
        results['stages'][i + 1] = bench_stage(i, hw, args, g)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
