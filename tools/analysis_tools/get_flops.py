"""Static and dynamic FLOPs of a vtpack_mm model (the paper's A.3 protocol).

    python tools/analysis_tools/get_flops.py CONFIG [--checkpoint CKPT]
        (--images DIR | --dataset | --shape H W) [--limit 20] [--out flops.json]

Static FLOPs: mmengine's analyzer on the whole model with every region at its finest
granularity (the vanilla computation, routers included). Dynamic FLOPs: the same with the
backbone's DGE layers counted per enabled query of the routed pass, averaged over the
images (--images: a folder; --dataset: the config's test images; --shape: one random
input). Also printed: beta, the per-layer complexity ratio (the paper's Fig. 5c), and, as
a check, mmengine's count of the backbone against vtpack_mm's analytic count.
One FLOP is one multiply-add, as mmengine and the paper count.
"""
import argparse
import json
import os.path as osp

import torch

from vtpack_mm.analysis import backbone_of, build_model, image_paths
from vtpack_mm.analysis.flops import count_flops, model_flops, test_inputs


def dataset_folder(cfg):
    ds = cfg.test_dataloader.dataset
    prefix = ds.get('data_prefix', {})
    sub = prefix.get('img', prefix.get('img_path', '')) if isinstance(prefix, dict) else prefix
    return osp.join(ds.get('data_root', ''), sub)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--images', help='a folder of images')
    src.add_argument('--dataset', action='store_true', help="the config's test images")
    src.add_argument('--shape', type=int, nargs=2, help='one random H W input')
    parser.add_argument('--limit', type=int, default=20)
    parser.add_argument('--out', help='write the numbers as JSON here')
    args = parser.parse_args()

    model = build_model(args.config, args.checkpoint)
    backbone = backbone_of(model)
    if args.shape:
        x = torch.randn(1, 3, *args.shape)
        samples = [(x, None)]
        whole = False
    else:
        folder = args.images or dataset_folder(model.cfg)
        samples = test_inputs(model, image_paths(folder, args.limit))
        whole = True
    rows = []
    for inputs, data_samples in samples:
        if whole:
            rows.append(model_flops(model, backbone, inputs, data_samples))
        else:
            rows.append(_backbone_only(backbone, inputs))
    n = len(rows)
    mean = {k: sum(r[k] for r in rows) / n for k in ('static', 'dynamic', 'backbone_static',
                                                      'backbone_dynamic', 'beta')}
    layers = {k: sum(r['layers'][k] for r in rows) / n for k in rows[0]['layers']}
    # check: mmengine's count of the vanilla-equivalent backbone vs the analytic count
    x0 = samples[0][0]
    with torch.no_grad():
        dges = backbone.dge_modules()
        saved = [d.force_choice for d in dges]
        for d in dges:
            d.force_choice = min(range(len(d.granularities)),
                                 key=lambda k: (d.granularities[k] == 0, d.granularities[k]))
        counted = count_flops(backbone, (x0, ))
        analytic = backbone.last_complexity.total_static()
        for d, s in zip(dges, saved):
            d.force_choice = s
    scope = 'whole model' if whole else 'backbone'
    print(f'{n} input(s); FLOPs = multiply-adds, averaged')
    print(f'{scope}: static {mean["static"] / 1e9:.3f} G, dynamic {mean["dynamic"] / 1e9:.3f} G')
    print(f'backbone: static {mean["backbone_static"] / 1e9:.3f} G, dynamic '
          f'{mean["backbone_dynamic"] / 1e9:.3f} G, beta {mean["beta"]:.4f}')
    print(f'check: mmengine counts the vanilla backbone at {counted / 1e9:.4f} G, vtpack_mm at '
          f'{analytic / 1e9:.4f} G ({100 * (analytic - counted) / counted:+.2f}%)')
    print('per-layer complexity ratio:')
    for name, r in layers.items():
        print(f'  {name:>16s}  {r:.3f}  ' + '#' * int(round(40 * r)))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(inputs=n, scope=scope, **mean, layers=layers,
                           mmengine_backbone=counted, analytic_backbone=analytic), f, indent=2)


@torch.no_grad()
def _backbone_only(backbone, x):
    backbone(x)
    m = backbone.last_complexity
    dyn = m.total_dynamic()
    dyn = float(dyn.float().mean()) if torch.is_tensor(dyn) else float(dyn)
    return dict(static=m.total_static(), dynamic=dyn, backbone_static=m.total_static(),
                backbone_dynamic=dyn, beta=float(m.ratio().float().mean()),
                layers=m.layer_ratios())


if __name__ == '__main__':
    main()
