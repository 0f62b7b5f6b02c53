"""Static and dynamic FLOPs of a whole vtpack_mm model (the paper's A.3 protocol).

    python tools/analysis_tools/get_flops.py CONFIG [--checkpoint CKPT]
        (--images DIR | --dataset | --shape H W) [--limit 20] [--target-beta 0.5]
        [--cfg-options k=v ...] [--out flops.json]

Static FLOPs: mmengine's analyzer on the whole model (detector, segmentor or classifier,
its ``tensor`` forward) running the vanilla computation, plus the routers. Dynamic FLOPs:
the same with the backbone's DGE blocks counted per enabled query of the routed pass,
averaged over the inputs (--images: a folder through the config's test pipeline;
--dataset: the config's test images; --shape: one H x W input of noise, not resized).
Routers as initialised keep the finest granularity; --target-beta shifts the logits (the
budget knob) until the inputs reach that beta, after giving untrained routers (no
--checkpoint) random weights. Also printed: the backbone's share, beta, the per-layer
complexity ratio (the paper's Fig. 5c), what mmdet's/mmseg's own get_flops would report
(mmengine's default counter, which has no handle for attention's matrix products), and
mmengine's count of the backbone against vtpack_mm's analytic count.
One FLOP is one multiply-add, as mmengine and the paper count.
"""
import argparse
import json
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.utils import track_iter_progress

from vtpack_mm.analysis import (backbone_of, build_model, calibrate_logit_shift, image_paths,
                                randomize_routers)
from vtpack_mm.analysis.flops import (count_flops, framework_flops, model_flops, shape_inputs,
                                      test_inputs)
from vtpack_mm.dge import last_complexity, vanilla_pass


def dataset_folder(cfg):
    ds = cfg.test_dataloader.dataset
    prefix = ds.get('data_prefix', {})
    sub = prefix.get('img', prefix.get('img_path', '')) if isinstance(prefix, dict) else prefix
    return osp.join(ds.get('data_root', ''), sub)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--images', help='a folder of images')
    src.add_argument('--dataset', action='store_true', help="the config's test images")
    src.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                     help='one H x W input of noise, not resized')
    parser.add_argument('--limit', type=int, default=20)
    parser.add_argument('--target-beta', type=float,
                        help='shift the router logits until the inputs reach this beta')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--out', help='write the numbers as JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    backbone = backbone_of(model)
    if args.shape:
        samples = [shape_inputs(model, *args.shape)]
    else:
        folder = args.images or dataset_folder(model.cfg)
        samples = test_inputs(model, image_paths(folder, args.limit))
    shift = 0.0
    if args.target_beta is not None:
        if args.checkpoint is None:
            randomize_routers(backbone)
        shift, _ = calibrate_logit_shift(backbone, [x for x, _ in samples], args.target_beta,
                                         verbose=True)
    rows = [model_flops(model, backbone, inputs, data_samples)
            for inputs, data_samples in (track_iter_progress(samples) if len(samples) > 1
                                         else samples)]
    n = len(rows)
    keys = ('static', 'dynamic', 'backbone_static', 'backbone_dynamic', 'beta')
    mean = {k: sum(r[k] for r in rows) / n for k in keys}
    layers = {k: sum(r['layers'][k] for r in rows) / n for k in rows[0]['layers']}
    x0, samples0 = samples[0]
    framework = framework_flops(model, backbone, x0, samples0)
    # check: mmengine's count of the vanilla backbone against the analytic count
    with torch.no_grad(), vanilla_pass(backbone):
        counted = count_flops(backbone, (x0, ))
        analytic = last_complexity(backbone).total_static()
    shape = 'x'.join(str(s) for s in x0.shape[-2:])
    print(f'{n} input(s) (first: {shape} after preprocessing); FLOPs = multiply-adds, averaged'
          + (f'; logit shift {shift:+.3f}' if shift else ''))
    print(f'whole model: static {mean["static"] / 1e9:.3f} G, dynamic '
          f'{mean["dynamic"] / 1e9:.3f} G ({mean["dynamic"] / mean["static"]:.3f} of static)')
    print(f'backbone: static {mean["backbone_static"] / 1e9:.3f} G '
          f'({100 * mean["backbone_static"] / mean["static"]:.1f}% of the model), dynamic '
          f'{mean["backbone_dynamic"] / 1e9:.3f} G, beta {mean["beta"]:.4f}')
    print(f"mmdet's/mmseg's get_flops (mmengine's default counter, attention products not "
          f'counted) on the first input: {framework / 1e9:.3f} G')
    print(f'check: mmengine counts the vanilla backbone at {counted / 1e9:.4f} G, vtpack_mm at '
          f'{analytic / 1e9:.4f} G ({100 * (analytic - counted) / counted:+.2f}%)')
    print('per-layer complexity ratio:')
    for name, r in layers.items():
        print(f'  {name:>16s}  {r:.3f}  ' + '#' * int(round(40 * r)))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(inputs=n, input_shape=list(x0.shape[-2:]), shift=shift, **mean,
                           layers=layers, framework_first=framework,
                           mmengine_backbone=counted, analytic_backbone=analytic), f, indent=2)
    return mean


if __name__ == '__main__':
    main()
