"""A bigger model with DGE against a smaller static one at the same cost (the paper's Pareto
claim), measured on the demo's shapes data (tools/run_pareto.sh runs it).

    python tools/analysis_tools/pareto.py --tiny CKPT --small CKPT --small-dge CKPT
        --out-dir OUT [--shifts -4 -2 0 2 4] [--bootstrap 1000] [--threads 2]
        [--images 8] [--backbone-images 2] [--backbone-shape 800 1333] [--repeats 5]
        [--data-root DIR]

Points: vanilla PVT-T, vanilla PVT-S, and PVT-S + DGE (the retrofit's fine-tune) at each
budget-knob shift. For every point: COCO bbox and segm mAP on the validation set with the
95 % bootstrap interval over its images, beta and backbone MACs at the demo size; the CPU
latency of the whole detector at the demo size (``--images`` validation images, batch 1,
``mode='predict'``, per image) and of the backbone alone on the first ``--backbone-images``
of them resized to ``--backbone-shape`` (padded to the preprocessor's multiple of 32, as
mmdet pads), with beta at that size. The latencies of all points are timed round-robin in one run (medians
and quartiles over ``--repeats`` rounds). Writes OUT/pareto.png, summary.md, summary.json.
"""
import argparse
import json
import os
import os.path as osp
import platform

import torch
import torch.nn.functional as F

from vtpack_mm.analysis import backbone_of, build_model, image_paths
from vtpack_mm.analysis.coco_bootstrap import interval_text
from vtpack_mm.analysis.evaluation import evaluate
from vtpack_mm.analysis.flops import test_inputs
from vtpack_mm.analysis.latency import summarize, time_variants
from vtpack_mm.analysis.loading import load_images, with_data_root
from vtpack_mm.compat import allow_runner_checkpoints
from vtpack_mm.dge import last_complexity, set_logit_shift

DEMO = 'configs/demo'
CONFIGS = dict(tiny=f'{DEMO}/mask-rcnn_pvt-t_fpn_600i_shapes-128.py',
               small=f'{DEMO}/mask-rcnn_pvt-s_fpn_600i_shapes-128.py',
               small_dge=f'{DEMO}/mask-rcnn_pvt-s-dge-b0.5_fpn_ft-200i_shapes-128.py')
LABELS = dict(tiny='PVT-T', small='PVT-S', small_dge='PVT-S + DGE')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tiny', required=True, help='vanilla PVT-T detector checkpoint')
    parser.add_argument('--small', required=True, help='vanilla PVT-S detector checkpoint')
    parser.add_argument('--small-dge', required=True,
                        help='PVT-S + DGE detector checkpoint (retrofit, fine-tuned)')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--shifts', type=float, nargs='+', default=[-4, -2, 0, 2, 4],
                        help='budget-knob shifts of the DGE model')
    parser.add_argument('--bootstrap', type=int, default=1000,
                        help='resamples for the 95%% interval of every mAP')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads')
    parser.add_argument('--images', type=int, default=8,
                        help='validation images timed per call')
    parser.add_argument('--backbone-images', type=int, default=2,
                        help='of those, how many the backbone-only timing runs')
    parser.add_argument('--backbone-shape', type=int, nargs=2, default=[800, 1333],
                        metavar=('H', 'W'), help='size of the backbone-only timing')
    parser.add_argument('--data-root',
                        help="read the shapes data from here (default: the configs' data/shapes/coco)")
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    return parser.parse_args(argv)


def points(args):
    """(key, model name, shift) of every point, in table order."""
    return [('tiny', 'tiny', 0.0), ('small', 'small', 0.0)] + \
        [(f'small_dge{s:+g}', 'small_dge', float(s)) for s in args.shifts]


def backbone_inputs(model, paths, shape):
    """The images resized to ``shape`` and zero-padded to the preprocessor's multiple."""
    div = int(model.cfg.model.data_preprocessor.get('pad_size_divisor', 1) or 1)
    H, W = (-(-int(d) // div) * div for d in shape)
    return [F.pad(x, (0, W - x.shape[-1], 0, H - x.shape[-2]))
            for x in load_images(paths, model.cfg, shape)]


def routed_cost(backbone, images):
    """(beta, GMACs) of the backbone per image at its current routing, means over the
    images, from one pass."""
    betas, gmacs = [], []
    backbone.eval()
    with torch.inference_mode():
        for x in images:
            backbone(x)
            meter = last_complexity(backbone)
            betas.append(float(torch.as_tensor(meter.ratio()).float().mean()))
            gmacs.append(float(torch.as_tensor(meter.total_dynamic(),
                                               dtype=torch.float64).mean()) / 1e9)
    return sum(betas) / len(betas), sum(gmacs) / len(gmacs)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    allow_runner_checkpoints()
    os.makedirs(args.out_dir, exist_ok=True)
    ckpts = dict(tiny=args.tiny, small=args.small, small_dge=args.small_dge)
    configs = {n: with_data_root(c, args.data_root) if args.data_root else c
               for n, c in CONFIGS.items()}
    for name, path in ckpts.items():
        if not osp.isfile(path):
            raise FileNotFoundError(f'--{name.replace("_", "-")}: no checkpoint at {path}')
    results = {}
    for key, name, shift in points(args):
        print(f'[pareto] {key}: evaluating', flush=True)
        run = evaluate(configs[name], ckpts[name], osp.join(args.out_dir, 'eval', key), shift,
                       bootstrap=args.bootstrap)
        results[key] = dict(model=name, label=LABELS[name], shift=shift, **run)

    models = {name: build_model(configs[name], ckpts[name]) for name in ckpts}
    ds = models['tiny'].cfg.test_dataloader.dataset
    paths = image_paths(osp.join(ds.data_root, ds.data_prefix.img), args.images)
    samples = {n: test_inputs(m, paths) for n, m in models.items()}
    big = backbone_inputs(models['tiny'], paths[:args.backbone_images], args.backbone_shape)

    def detector(name, shift):
        def run():
            set_logit_shift(models[name], shift)
            for x, s in samples[name]:
                models[name](x, s, mode='predict')
        return run

    def backbone(name, shift):
        bone = backbone_of(models[name])

        def run():
            set_logit_shift(bone, shift)
            for x in big:
                bone(x)
        return run

    for key, name, shift in points(args):
        bone = backbone_of(models[name])
        set_logit_shift(bone, shift)
        results[key]['beta_big'], results[key]['gmacs_big'] = routed_cost(bone, big)
    print(f'[pareto] timing {len(results)} detectors on {len(paths)} images, then their '
          f'backbones at {"x".join(map(str, big[0].shape[-2:]))}', flush=True)
    times = {}
    for scope, make in (('detector', detector), ('backbone', backbone)):
        t = time_variants({key: make(name, shift) for key, name, shift in points(args)},
                          args.warmup, args.repeats, progress=True)
        n = len(paths) if scope == 'detector' else len(big)
        for key, ts in t.items():
            per_image = [v / n for v in ts]
            times.setdefault(key, {})[scope] = summarize(per_image)
            results[key][f'{scope}_seconds'] = per_image
    for key in results:
        results[key]['latency'] = times[key]
    shape = 'x'.join(map(str, big[0].shape[-2:]))
    meta = dict(processor=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), images_timed=len(paths),
                backbone_images_timed=len(big),
                backbone_shape=shape, repeats=args.repeats)
    with open(osp.join(args.out_dir, 'summary.json'), 'w') as f:
        json.dump(dict(meta=meta, points=results), f, indent=2)
    plot(results, shape, osp.join(args.out_dir, 'pareto.png'))
    lines = markdown(results, meta)
    with open(osp.join(args.out_dir, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return results


def plot(results, shape, path):
    """bbox mAP (95 % interval as error bars) against the two latencies."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    style = dict(tiny=('s', 'tab:blue'), small=('o', 'tab:orange'), small_dge=('D', 'tab:green'))
    for ax, scope, title in ((axes[0], 'detector', 'whole detector, demo size, per image'),
                             (axes[1], 'backbone', f'backbone alone at {shape}')):
        for name in ('tiny', 'small', 'small_dge'):
            pts = sorted((r for r in results.values() if r['model'] == name),
                         key=lambda r: r['latency'][scope]['median'])
            xs = [r['latency'][scope]['median'] * 1e3 for r in pts]
            ys = [r['metrics']['coco/bbox_mAP'] for r in pts]
            ivs = [r['intervals'].get('bbox', {}) for r in pts]
            err = [[y - iv.get('low', y) for y, iv in zip(ys, ivs)],
                   [iv.get('high', y) - y for y, iv in zip(ys, ivs)]]
            marker, color = style[name]
            ax.errorbar(xs, ys, yerr=err, fmt=marker + ('-' if len(pts) > 1 else ''),
                        color=color, capsize=3, label=LABELS[name])
            if name == 'small_dge':
                for x, y, r in zip(xs, ys, pts):
                    ax.annotate(f"β {r['beta']:.2f}", (x, y), fontsize=7, xytext=(3, -10),
                                textcoords='offset points')
        ax.set_xlabel('CPU latency (ms, median)')
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel('bbox mAP (95 % bootstrap interval)')
    axes[0].legend()
    plt.tight_layout()
    plt.savefig(path, dpi=120)
    plt.close()


def markdown(results, meta):
    def ms(r, scope):
        s = r['latency'][scope]
        return f"{s['median'] * 1e3:.1f} ({s['q1'] * 1e3:.1f}–{s['q3'] * 1e3:.1f})"

    images = next(iter(results.values()))['images']
    lines = ['# A bigger dynamic model against a smaller static one (shapes data)', '',
             f"Mask R-CNN on the demo's shapes data ({images} validation images, 128 px). CPU "
             f"{meta['processor']}, {meta['threads']} threads. Latency: median (q1–q3) over "
             f"{meta['repeats']} rounds, all points timed round-robin in one run; the detector "
             f"per image over {meta['images_timed']} validation images at batch 1 "
             f"(`mode='predict'`), the backbone alone per image on the first "
             f"{meta['backbone_images_timed']} of them resized to {meta['backbone_shape']}. "
             f'mAP ± is half the 95 % bootstrap interval over the validation images.', '',
             '| model | knob shift | β (128 px) | backbone GMACs (128 px) | bbox mAP | segm mAP '
             f"| detector ms/image | β ({meta['backbone_shape']}) | backbone GMACs "
             f"({meta['backbone_shape']}) | backbone ms ({meta['backbone_shape']}) |",
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in results.values():
        iv = r.get('intervals', {})
        shift = f"{r['shift']:+g}" if r['model'] == 'small_dge' else '–'
        lines.append(
            f"| {r['label']} | {shift} | {r['beta']:.3f} | {r['dynamic_gmacs']:.4f} | "
            f"{interval_text(r['metrics']['coco/bbox_mAP'], iv.get('bbox'))} | "
            f"{interval_text(r['metrics']['coco/segm_mAP'], iv.get('segm'))} | "
            f"{ms(r, 'detector')} | {r['beta_big']:.3f} | {r['gmacs_big']:.2f} | "
            f"{ms(r, 'backbone')} |")
    lines += ['', 'What this is evidence of: on this synthetic task and schedule, whether PVT-S '
              'with DGE at a given measured CPU cost keeps more accuracy than PVT-T or PVT-S '
              'run statically, within the evaluation\'s intervals. What it is not: a test of '
              'the paper\'s COCO/ADE20K claim (PVT-M + DGE against PVT-S there): three shapes, '
              '600 iterations from scratch, one seed, where a bigger backbone need not help.']
    return lines


if __name__ == '__main__':
    main()
