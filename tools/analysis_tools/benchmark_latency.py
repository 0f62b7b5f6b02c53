"""Backbone latency: vanilla vs DGE at a given beta vs mmdet's PVT, as ratios, in one run.

    python tools/analysis_tools/benchmark_latency.py [--model pvt] [--arch small]
        [--size 800 1280] [--batch 1 8] [--threads 2] [--device cpu]
        [--target-beta 0.5] [--images DIR] [--config CFG [--checkpoint CKPT]]
        [--warmup 2] [--repeats 7] [--profile] [--out results.json]

The routing timed is real: with --config/--checkpoint the trained routers, shifted with
the budget knob to --target-beta unless --no-calibrate; otherwise routers with random
weights whose shift is calibrated so that the benchmark images reach --target-beta.
Images come from --images (resized to --size) or scikit-image's bundled samples. The
variants are timed round-robin (warm-up, then repeats); medians are reported, and each speed-up is the
median over rounds of vanilla time / variant time within the round:

  vanilla      the vtpack_mm backbone with dge_cfg=None
  dge          the same weights with DGE at the calibrated beta
  dge-finest   DGE with every region at the finest granularity (the routing overhead)
  mmdet        mmdet's PyramidVisionTransformer with the same weights (PVT v1 only)

On CPU the memory allocator moves the results: with glibc's defaults every large tensor
is page-faulted in afresh, which costs the larger vanilla model more. Run with
MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 (or
THP_MEM_ALLOC_ENABLE=1) to time the models without that cost (docs/benchmarks.md has both).
"""
import argparse
import json
import platform

import numpy as np
import torch
from mmengine.config import Config

import vtpack_mm
from vtpack_mm.analysis import (IMAGENET_NORM, backbone_of, build_model, calibrate_logit_shift,
                                image_paths, load_images, measure_beta, randomize_routers)
from vtpack_mm.analysis.flops import routed_flops
from vtpack_mm.analysis.loading import SAMPLE_PHOTOS, sample_photos
from vtpack_mm.analysis.latency import paired_speedups, summarize, time_variants
from vtpack_mm.dge import forced_choice, last_complexity
from vtpack_mm.models.converters import to_mmdet_pvt

MODELS = dict(pvt=vtpack_mm.PVT, dpvt=vtpack_mm.DPVT, deit=vtpack_mm.DeiT, pvtv2=vtpack_mm.PVTv2,
              mit=vtpack_mm.MiT)


def sample_images(size):
    """scikit-image's bundled photos, normalised like ImageNet, resized to ``size``."""
    from skimage import transform
    mean, std = np.array(IMAGENET_NORM['mean']) / 255, np.array(IMAGENET_NORM['std']) / 255
    out = []
    for rgb in sample_photos().values():
        img = rgb.astype(np.float32) / 255.0
        img = (transform.resize(img, size, anti_aliasing=True) - mean) / std
        out.append(torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None])
    return out


def build_backbones(args):
    """(vanilla, dge) backbones with the same weights, in eval mode, and whether the DGE
    routers are random (and so must be calibrated)."""
    if args.config:
        dge = backbone_of(build_model(args.config, args.checkpoint))
        cfg = Config.fromfile(args.config).model.backbone
        vanilla = vtpack_mm.MODELS.build(dict(cfg, dge_cfg=None, init_cfg=None))
        vanilla.load_state_dict({k: v for k, v in dge.state_dict().items()
                                 if '.dge.' not in k}, strict=True)
        if args.checkpoint is None:
            randomize_routers(dge)
        return vanilla.eval(), dge.eval(), args.checkpoint is None
    cls = MODELS[args.model]
    torch.manual_seed(0)
    vanilla = cls(arch=args.arch)
    vanilla.init_weights()
    dge = cls(arch=args.arch, dge_cfg=dict(granularities=tuple(args.granularities)))
    dge.load_state_dict(vanilla.state_dict(), strict=False)
    randomize_routers(dge)
    return vanilla.eval(), dge.eval(), True


def mmdet_pvt(vanilla):
    """mmdet's PyramidVisionTransformer holding the weights of our vanilla PVT."""
    from mmdet.models.backbones import PyramidVisionTransformer
    a = vanilla.arch
    ref = PyramidVisionTransformer(
        pretrain_img_size=vanilla.pretrain_img_size, embed_dims=a['embed_dims'][0] //
        a['num_heads'][0], num_layers=a['depths'], num_heads=a['num_heads'],
        sr_ratios=a['sr_ratios'], mlp_ratios=a['mlp_ratios'], drop_path_rate=0.0)
    ref.load_state_dict(to_mmdet_pvt(vanilla.state_dict()), strict=True)
    return ref.eval()


def print_profile(name, fn, device, rows=15):
    """One forward of ``fn`` under torch.profiler: operators by self time."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    sort = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    with torch.inference_mode():
        fn()
        with profile(activities=activities) as prof:
            fn()
    print(f'\n{name}: one forward, operators by self time')
    print(prof.key_averages().table(sort_by=sort, row_limit=rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=sorted(MODELS), default='pvt')
    parser.add_argument('--arch', default='small')
    parser.add_argument('--granularities', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--size', type=int, nargs=2, default=[800, 1280])
    parser.add_argument('--batch', type=int, nargs='+', default=[1])
    parser.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--target-beta', type=float, default=0.5)
    parser.add_argument('--no-calibrate', action='store_true',
                        help='time a trained router as it is (no logit shift)')
    parser.add_argument('--images', help='folder of images (default: scikit-image samples)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--no-mmdet', action='store_true')
    parser.add_argument('--profile', action='store_true',
                        help='after timing, print where one forward of vanilla and of DGE '
                        'spends its time (torch.profiler, operators by self time)')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    vanilla, dge, random_router = build_backbones(args)
    if args.images:
        cfg = Config.fromfile(args.config) if args.config else Config(
            dict(model=dict(data_preprocessor=dict(**IMAGENET_NORM, bgr_to_rgb=True))))
        images = load_images(image_paths(args.images, len(SAMPLE_PHOTOS)), cfg, args.size)
    else:
        images = sample_images(tuple(args.size))
    if args.no_calibrate and not random_router:
        shift, beta = 0.0, measure_beta(dge, images)
    else:
        shift, beta = calibrate_logit_shift(dge, images, args.target_beta, tol=0.01,
                                            verbose=True)
    models = dict(vanilla=vanilla, dge=dge)
    if type(vanilla) is vtpack_mm.PVT and not args.no_mmdet:
        models['mmdet'] = mmdet_pvt(vanilla)
    for m in models.values():
        m.to(device)
    images = [x.to(device) for x in images]

    def all_finest(x):
        with forced_choice(dge, 'finest'):
            return dge(x)

    results = dict(processor=platform.processor() or platform.machine(), device=str(device),
                   threads=torch.get_num_threads(), size=args.size,
                   model=type(vanilla).__name__, arch=getattr(vanilla, 'arch', None),
                   router='random, calibrated' if random_router else 'trained',
                   logit_shift=shift, calibration_beta=beta, batches={})
    for bs in args.batch:
        x = torch.cat([images[i % len(images)] for i in range(bs)])
        with torch.inference_mode():
            dge(x)
        beta_x = float(last_complexity(dge).ratio().float().mean())
        # whole-backbone FLOPs per image (A.3 protocol), averaged over the batch
        per_image = [routed_flops(dge, dge, x[i:i + 1]) for i in range(bs)]
        flops = {k: float(np.mean([f[k] for f in per_image])) for k in ('static', 'dynamic')}
        ideal = flops['static'] / flops['dynamic']
        fns = {name: (lambda m=m: m(x)) for name, m in models.items()}
        fns['dge-finest'] = lambda: all_finest(x)
        times = time_variants(fns, args.warmup, args.repeats, device, progress=True)
        stats = {k: summarize(v) for k, v in times.items()}
        paired = paired_speedups(times, 'vanilla')
        results['batches'][bs] = dict(beta=beta_x, flops_static=flops['static'],
                                      flops_dynamic=flops['dynamic'],
                                      flops_ideal_speedup=ideal,
                                      speedup=paired, stats=stats, times=times)
        print(f'\n{type(vanilla).__name__}-{args.arch} batch {bs} at {args.size[0]}x'
              f'{args.size[1]} on {device} ({torch.get_num_threads()} threads): DGE beta '
              f'{beta_x:.3f}; backbone GFLOPs {flops["static"] / 1e9:.1f} static, '
              f'{flops["dynamic"] / 1e9:.1f} dynamic: FLOPs-ideal speedup {ideal:.2f}x')
        print(f'{"variant":>11s} {"median ms":>10s} {"q1..q3 ms":>17s} {"vanilla/this":>13s}'
              ' (median of paired ratios)')
        for name, s in stats.items():
            print(f'{name:>11s} {1e3 * s["median"]:10.1f} {1e3 * s["q1"]:8.1f}..'
                  f'{1e3 * s["q3"]:<7.1f} {paired[name]:12.2f}x')
        if args.profile:
            for name in ('vanilla', 'dge'):
                print_profile(name, fns[name], device)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
