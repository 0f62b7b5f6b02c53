"""Report of the segmentation demo (tools/run_seg_demo.sh): SegFormer on the shapes data.

    python tools/misc/seg_demo_report.py WORK --out-dir OUT [--shifts -4 -2 2 4]
        [--bootstrap 500]

WORK holds one folder per seed (seed0, seed1, ...), each with the three runs of
run_seg_demo.sh: vanilla (the user's own mmseg config, native MixVisionTransformer),
retrofit (tools/retrofit.py on it: vtpack_mm.MiT + DGE, routers only) and retrofit_ft (a
short fine-tune). Every finished run is evaluated on the validation set: mIoU, beta and
the backbone MACs of every image at inference, with the 95 % bootstrap interval of the
mIoU over the validation images. With several seeds a second table gives each model's
mean ± s.d. over seeds beside the evaluation's interval, and its mIoU against the vanilla
model of the same seed. The vanilla run is evaluated through its
translated config (vtpack_mm.MiT, the same function), which records the MACs. The
fine-tuned retrofit's budget knob is swept. OUT gets summary.md and summary.json.
"""
import argparse
import glob
import json
import os
import os.path as osp

from mmengine.config import Config

from vtpack_mm.analysis.evaluation import (difference_text, evaluate, interval_spread,
                                           mean_sd_text, mean_width_text, spread, wall_seconds)
from vtpack_mm.compat import allow_runner_checkpoints
from vtpack_mm.native import translate_model_config

DEMO = 'configs/demo'
VANILLA = f'{DEMO}/segformer_mit-b0_1000i_shapes-128.py'
FT = f'{DEMO}/segformer_mit-b0-dge-b0.5_ft-200i_shapes-128.py'
ROWS = [  # (run folder, final iteration, table label)
    ('vanilla', 1000, 'vanilla (native mmseg MiT-B0), trained'),
    ('retrofit', 200, 'vanilla → tools/retrofit.py, routers only'),
    ('retrofit_ft', 200, 'vanilla → retrofit → short full fine-tune'),
]
KNOB_ROW = 'retrofit_ft'


def eval_config(work, seed, name):
    """The config a run is evaluated with: the vanilla one translated, the retrofit's as the
    Runner dumped it, the fine-tune's own."""
    if name == 'vanilla':
        return translate_model_config(Config.fromfile(VANILLA))
    if name == 'retrofit':
        return osp.join(work, f'seed{seed}', 'retrofit', osp.basename(VANILLA))
    return FT


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='the demo folder (one seedN folder per seed)')
    parser.add_argument('--out-dir', required=True, help='report folder')
    parser.add_argument('--shifts', type=float, nargs='+', default=[-4, -2, 2, 4],
                        help='budget-knob shifts swept besides 0')
    parser.add_argument('--bootstrap', type=int, default=500,
                        help='resamples of the mIoU interval over the validation images '
                             '(0: none)')
    args = parser.parse_args()
    allow_runner_checkpoints()
    os.makedirs(args.out_dir, exist_ok=True)
    seeds = sorted(int(osp.basename(p)[4:]) for p in glob.glob(osp.join(args.work, 'seed*')))
    if not seeds:
        raise FileNotFoundError(f'no seed folders in {args.work}: run tools/run_seg_demo.sh')
    results = {}
    for seed in seeds:
        runs = results.setdefault(seed, {})
        for name, iters, _ in ROWS:
            run_dir = osp.join(args.work, f'seed{seed}', name)
            ckpt = osp.join(run_dir, f'iter_{iters}.pth')
            if not osp.isfile(ckpt):
                print(f'[report] seed {seed} {name}: not trained ({ckpt} missing), skipped')
                continue
            config = eval_config(args.work, seed, name)
            print(f'[report] seed {seed} {name}: evaluating {ckpt}')
            run = evaluate(config, ckpt, osp.join(args.out_dir, 'eval', f'seed{seed}_{name}'),
                           bootstrap=args.bootstrap)
            run['train_seconds'] = wall_seconds(run_dir)
            if name == KNOB_ROW:
                run['knob'] = [dict(shift=0.0, beta=run['beta'], metrics=run['metrics'],
                                    dynamic_gmacs=run['dynamic_gmacs'])]
                for shift in args.shifts:
                    r = evaluate(config, ckpt, osp.join(args.out_dir, 'eval', f'knob{shift:+g}'),
                                 shift)
                    run['knob'].append(dict(shift=shift, beta=r['beta'], metrics=r['metrics'],
                                            dynamic_gmacs=r['dynamic_gmacs']))
                run['knob'].sort(key=lambda p: p['shift'])
            runs[name] = run
    with open(osp.join(args.out_dir, 'summary.json'), 'w') as f:
        json.dump(dict(seeds=seeds, runs={str(s): r for s, r in results.items()}), f, indent=2)
    write_markdown(args.out_dir, seeds, results, args.bootstrap)


def miou(run):
    return run['metrics']['mIoU']


def seed_rows(results, seeds):
    """Per model trained on every seed: mIoU and beta as mean ± s.d. over seeds, the mean
    half width of the evaluation's interval, and the mIoU against the vanilla model of the
    same seed."""
    lines = []
    for name, _, label in ROWS:
        runs = [results[s][name] for s in seeds if name in results[s]]
        if len(runs) < 2 or len(runs) < len(seeds):
            continue
        base = [results[s].get('vanilla') for s in seeds]
        diff = ('–' if name == 'vanilla' or None in base else
                difference_text([miou(r) for r in runs], [miou(b) for b in base], '{:+.2f}'))
        lines.append(f"| {label} | {mean_sd_text([miou(r) for r in runs], '{:.2f}')} | "
                     f"{mean_width_text([r['intervals'].get('mIoU') for r in runs], '{:.2f}')} | "
                     f"{mean_sd_text([r['beta'] for r in runs])} | {diff} |")
    if not lines:
        return []
    return ['', f'Over the {len(seeds)} seeds (mean ± sample standard deviation; the interval '
            'column is the mean ± of the evaluation alone, one model on resampled images; the '
            'last column is each model against the vanilla model of its own seed):', '',
            '| model | mIoU | mIoU interval ± | β | mIoU − vanilla, same seed |',
            '| --- | --- | --- | --- | --- |'] + lines


def write_markdown(out_dir, seeds, results, resamples=0):
    def col(name, get, fmt='{:.3f}'):
        return spread([get(results[s][name]) if name in results[s] else None for s in seeds],
                      fmt)

    def miou_col(name):
        runs = [results[s][name] for s in seeds if name in results[s]]
        return interval_spread([miou(r) for r in runs],
                               [r['intervals'].get('mIoU') for r in runs], '{:.2f}')

    images = next(r['images'] for s in seeds for r in results[s].values())
    note = (f' ± is half the width of the 95 % bootstrap interval of the mIoU over the '
            f'validation images ({resamples} resamples of {images} images with replacement): '
            f'the evaluation\'s own noise for one model, not the training\'s.'
            if resamples else '')
    lines = [f'# Segmentation demo: SegFormer MiT-B0 on the shapes data (seeds {seeds})', '',
             f'Validation set: {images} images of 128x128. All-background prediction scores '
             f'mIoU 21.8 (aAcc 87.3). β and GMACs: mean over the validation images at '
             f'inference.{note}', '',
             '| model | mIoU | aAcc | β | backbone GMACs | train wall time (s) |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, _, label in ROWS:
        if not any(name in results[s] for s in seeds):
            continue
        lines.append(f"| {label} | {miou_col(name)} "
                     f"| {col(name, lambda r: r['metrics']['aAcc'], '{:.2f}')} "
                     f"| {col(name, lambda r: r['beta'])} "
                     f"| {col(name, lambda r: r['dynamic_gmacs'], '{:.4f}')} "
                     f"| {col(name, lambda r: r['train_seconds'], '{:.0f}')} |")
    lines += seed_rows(results, seeds)
    for seed in seeds:
        knob = results[seed].get(KNOB_ROW, {}).get('knob')
        if not knob:
            continue
        lines += ['', f'Budget knob on the fine-tuned retrofit, seed {seed} '
                  '(`dge_cfg.logit_shift`, one checkpoint):', '',
                  '| shift | β | backbone GMACs | mIoU |', '| --- | --- | --- | --- |']
        lines += [f"| {p['shift']:+g} | {p['beta']:.3f} | {p['dynamic_gmacs']:.4f} | "
                  f"{p['metrics']['mIoU']:.2f} |" for p in knob]
    with open(osp.join(out_dir, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
