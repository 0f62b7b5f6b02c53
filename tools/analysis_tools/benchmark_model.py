"""Whole-model latency: a detector, segmentor or classifier with its DGE blocks routed
against the same model with those blocks run as vanilla blocks, as ratios, in one run.

    python tools/analysis_tools/benchmark_model.py CONFIG [--checkpoint CKPT]
        [--images DIR] [--limit 4] [--mode predict] [--target-beta 0.5] [--threads 2]
        [--warmup 1] [--repeats 5] [--cfg-options k=v ...] [--out results.json]

Inputs: the images (default: scikit-image's bundled photos) through the config's test
pipeline, so they are resized and padded as the config does, one image per forward (batch
1). One timed call runs every image once. Variants, timed round-robin; medians, and each
speed-up is the median over rounds of the vanilla time / the variant's time in that round:

  vanilla           the whole model, every DGE block run as its vanilla block
  dge               the same weights, routed at the calibrated beta
  vanilla-backbone  the backbone alone, vanilla, on the same inputs
  dge-backbone      the backbone alone, routed

--mode predict times ``model(inputs, data_samples, mode='predict')`` (what test_step runs,
post-processing included); --mode tensor the raw network outputs. Without --checkpoint the
routers get random weights; with one, the trained routers are used. Either way the budget
knob is set so that the images reach --target-beta, unless --no-calibrate. The FLOPs-ideal
speed-up is the whole model's static / dynamic FLOPs (get_flops.py's count) on the same
images; the whole-model time less the backbone's says where the rest goes.
"""
import argparse
import json
import os.path as osp
import platform
import tempfile

import torch
from mmengine.config import DictAction

from vtpack_mm.analysis import (backbone_of, build_model, calibrate_logit_shift, image_paths,
                                measure_beta, randomize_routers)
from vtpack_mm.analysis.flops import model_flops, test_inputs
from vtpack_mm.analysis.latency import (paired_speedups, stats_cells, summarize,
                                        time_variants)
from vtpack_mm.analysis.loading import write_sample_photos
from vtpack_mm.dge import dge_encoders, vanilla_pass


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--images', help='folder of images (default: scikit-image samples)')
    parser.add_argument('--limit', type=int, default=4, help='use at most this many images')
    parser.add_argument('--mode', choices=['predict', 'tensor'], default='predict')
    parser.add_argument('--target-beta', type=float, default=0.5)
    parser.add_argument('--no-calibrate', action='store_true',
                        help='time a trained router as it is (no logit shift)')
    parser.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    backbone = backbone_of(model)
    if not dge_encoders(backbone):
        raise RuntimeError(f'{args.config}: the backbone has no DGE blocks (dge_cfg is None); '
                           f'give the DGE config, the vanilla variant is timed from it')
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.images or write_sample_photos(tmp)
        samples = test_inputs(model, image_paths(folder, args.limit))
    images = [x for x, _ in samples]
    if args.checkpoint is None:
        randomize_routers(backbone)
    if args.no_calibrate:
        shift, beta = 0.0, measure_beta(backbone, images)
    else:
        shift, beta = calibrate_logit_shift(backbone, images, args.target_beta, tol=0.01,
                                            verbose=True)
    flops = [model_flops(model, backbone, x, s) for x, s in samples]
    static = sum(f['static'] for f in flops)
    dynamic = sum(f['dynamic'] for f in flops)
    b_static = sum(f['backbone_static'] for f in flops)
    b_dynamic = sum(f['backbone_dynamic'] for f in flops)

    def whole():
        for x, s in samples:
            model(x, s, mode=args.mode)

    def bone():
        for x in images:
            backbone(x)

    def vanilla(fn):
        def run():
            with vanilla_pass(backbone):
                fn()
        return run

    fns = {'vanilla': vanilla(whole), 'dge': whole,
           'vanilla-backbone': vanilla(bone), 'dge-backbone': bone}
    times = time_variants(fns, args.warmup, args.repeats, progress=True)
    stats = {k: summarize(v) for k, v in times.items()}
    # each variant against the vanilla run of the same scope
    paired = {**paired_speedups({k: times[k] for k in ('vanilla', 'dge')}, 'vanilla'),
              **paired_speedups({k: times[k] for k in ('vanilla-backbone', 'dge-backbone')},
                                'vanilla-backbone')}
    shapes = sorted({'x'.join(str(d) for d in x.shape[-2:]) for x in images})
    rest = {k: stats[k]['median'] - stats[f'{k}-backbone']['median'] for k in ('vanilla', 'dge')}
    results = dict(config=args.config, checkpoint=args.checkpoint, mode=args.mode,
                   processor=platform.processor() or platform.machine(),
                   threads=torch.get_num_threads(), images=len(samples), input_shapes=shapes,
                   router='trained' if args.checkpoint else 'random, calibrated',
                   logit_shift=shift, beta=beta, flops_static=static, flops_dynamic=dynamic,
                   flops_ideal_speedup=static / dynamic, backbone_flops_static=b_static,
                   backbone_flops_dynamic=b_dynamic,
                   backbone_flops_ideal_speedup=b_static / b_dynamic, speedup=paired,
                   rest_of_model_seconds=rest, stats=stats, times=times)
    print(f'\n{osp.basename(args.config)}, {len(samples)} image(s) at {", ".join(shapes)}, '
          f'mode {args.mode}, {torch.get_num_threads()} threads: beta {beta:.3f}')
    print(f'whole model GFLOPs {static / 1e9:.1f} static, {dynamic / 1e9:.1f} dynamic: '
          f'FLOPs-ideal {static / dynamic:.2f}x; backbone {b_static / 1e9:.1f} -> '
          f'{b_dynamic / 1e9:.1f}: {b_static / b_dynamic:.2f}x')
    print(f'{"variant":>16s} {"median s":>9s} {"q1..q3 s":>15s} {"speed-up":>9s}'
          ' (median of paired ratios against its vanilla)')
    for name, s in stats.items():
        print(f'{name:>16s} {stats_cells(s)} '
              f'{paired[name]:8.2f}x')
    print(f'outside the backbone: vanilla {rest["vanilla"]:.3f} s, DGE {rest["dge"]:.3f} s')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
