"""Report of the main job (tools/run_demo.sh): accuracy against complexity on the shapes data.

    python tools/misc/demo_report.py WORK --out-dir OUT [--shifts -8 -4 -2 2 4 8]
        [--bootstrap 1000]

WORK holds one folder per seed (seed0, seed1, ...), each with the four training runs of
run_demo.sh (vanilla, dge_scratch, retrofit, retrofit_ft). For every finished run this
publishes the checkpoint (tools/model_converters/publish_model.py), evaluates the published
file (COCO bbox/segm mAP on the validation set, each with the 95 % bootstrap interval over
the validation images), records beta and the backbone MACs of every validation image at
inference and the test wall time, and sweeps the budget knob (``dge_cfg.logit_shift``) of
the first seed's fine-tuned retrofit. With several seeds, summary.md also gives each
model's mean ± standard deviation over seeds beside the evaluation's interval; with the
first seed's retrofit_b<gamma> / retrofit_ft_b<gamma> folders (run_demo.sh BUDGETS), the
budget asked against beta at inference. Everything goes to OUT: summary.md, summary.json,
knob.png, gates.png, beta_curve.png, metafile.yml.
"""
import argparse
import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
from mmengine.config import Config

from vtpack_mm.analysis.coco_bootstrap import interval_text
from vtpack_mm.analysis.evaluation import (difference_text, evaluate, interval_spread,
                                           mean_sd_text, mean_width_text, spread, wall_seconds)
from vtpack_mm.analysis.loading import backbone_of
from vtpack_mm.compat import allow_runner_checkpoints
from vtpack_mm.dge import dge_encoders, routing_maps
from vtpack_mm.models.converters import publish
from vtpack_mm.visualization import draw_gates, legend

DEMO = 'configs/demo'
VANILLA = f'{DEMO}/mask-rcnn_pvt-t_fpn_600i_shapes-128.py'
DGE = f'{DEMO}/mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py'
ROWS = [  # (run folder, final iteration, evaluation config, table label)
    ('vanilla', 600, VANILLA, 'vanilla, trained'),
    ('dge_scratch', 600, DGE, 'DGE γ = 0.5, trained from scratch'),
    ('retrofit', 200, DGE, 'vanilla → retrofit, routers only'),
    ('retrofit_ft', 200, DGE, 'vanilla → retrofit → short full fine-tune'),
]
KNOB_ROW = 'retrofit_ft'


def beta_history(run_dir):
    """(iteration, beta, budget) per logged training step, from the run's scalars.json."""
    rows = []
    for path in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'beta' in rec and 'budget' in rec:
                    rows.append((rec['iter'], rec['beta'], rec['budget']))
    return sorted(dict((r[0], r) for r in rows).values())


def plot_beta(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    it, beta, gamma = zip(*rows)
    plt.figure(figsize=(5, 3))
    plt.plot(it, beta, label='beta (training, sampled gates)')
    plt.plot(it, gamma, '--', label='budget gamma')
    plt.xlabel('iteration')
    plt.ylabel('complexity ratio')
    plt.ylim(0, 1.05)
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=120)
    plt.close()


def plot_knob(results, path):
    """bbox / segm mAP against beta: the knob sweeps, and every run as a marker."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    markers = dict(vanilla='s', dge_scratch='o', retrofit='^', retrofit_ft='D')
    for ax, kind in zip(axes, ('bbox', 'segm')):
        for seed, runs in sorted(results.items()):
            sweep = runs.get(KNOB_ROW, {}).get('knob', [])
            if sweep:
                pts = sorted((p['beta'], p['metrics'][f'coco/{kind}_mAP']) for p in sweep)
                ax.plot(*zip(*pts), '-', color='gray', alpha=0.6,
                        label=f'{KNOB_ROW} knob sweep, seed {seed}')
            for name, run in runs.items():
                ax.plot(run['beta'], run['metrics'][f'coco/{kind}_mAP'], markers[name],
                        label=f'{name}, seed {seed}')
        ax.set_xlabel('beta (inference, mean over validation images)')
        ax.set_ylabel(f'{kind} mAP')
        ax.set_xlim(0, 1.05)
    axes[1].legend(fontsize=6)
    plt.tight_layout()
    plt.savefig(path, dpi=120)
    plt.close()


def gate_picture(config, checkpoint, path, num=4):
    """The chosen granularity of every region in each stage, for a few validation images."""
    from mmdet.apis import inference_detector, init_detector
    cfg = Config.fromfile(config)
    model = init_detector(cfg, checkpoint, device='cpu')
    backbone = backbone_of(model)
    ds = cfg.test_dataloader.dataset
    paths = sorted(glob.glob(osp.join(ds.data_root, ds.data_prefix.img, '*.png')))[:num]
    h, w = cfg.test_dataloader.dataset.pipeline[1].scale
    rows = []
    for p in paths:
        inference_detector(model, p)
        img = cv2.resize(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB), (w, h))
        rows.append(draw_gates(backbone, img))
    picture = np.concatenate(rows, 0)
    cv2.imwrite(path, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return ['input'] + [m['group'] for m in routing_maps(backbone, 0)], \
        legend(dge_encoders(backbone)[0].granularities)


def metafile(results, published):
    lines = ['Collections:', '  - Name: DGE demo (shapes)', '    Metadata:',
             '      Training Data: embedded shapes data (tools/misc/make_shapes_dataset.py)',
             'Models:']
    for seed, runs in sorted(results.items()):
        for name, iters, config, label in ROWS:
            if name not in runs:
                continue
            run = runs[name]
            lines += [f'  - Name: mask-rcnn_pvt-t_{name}_seed{seed}',
                      '    In Collection: DGE demo (shapes)', f'    Config: {config}',
                      f'    Metadata: {{Description: "{label}", Iterations: {iters}, '
                      f'Beta: {run["beta"]:.3f}, Backbone GMACs: {run["dynamic_gmacs"]:.4f}}}',
                      '    Results:', '      - Task: Object Detection', '        Dataset: shapes',
                      f'        Metrics: {{box AP: {100 * run["metrics"]["coco/bbox_mAP"]:.1f}}}',
                      '      - Task: Instance Segmentation', '        Dataset: shapes',
                      f'        Metrics: {{mask AP: {100 * run["metrics"]["coco/segm_mAP"]:.1f}}}',
                      f'    Weights: {published[(seed, name)]}']
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='the demo folder (one seedN folder per seed)')
    parser.add_argument('--out-dir', required=True, help='report folder')
    parser.add_argument('--shifts', type=float, nargs='+', default=[-8, -4, -2, 2, 4, 8],
                        help='budget-knob shifts swept besides 0')
    parser.add_argument('--bootstrap', type=int, default=1000,
                        help='resamples of the validation images for the 95%% interval of '
                        'every mAP (0: none)')
    args = parser.parse_args()
    allow_runner_checkpoints()
    os.makedirs(args.out_dir, exist_ok=True)
    seeds = sorted(int(osp.basename(p)[4:]) for p in glob.glob(osp.join(args.work, 'seed*')))
    if not seeds:
        raise FileNotFoundError(f'no seed folders in {args.work}: run tools/run_demo.sh first')
    results, published = {}, {}
    for seed in seeds:
        runs = results.setdefault(seed, {})
        for name, iters, config, label in ROWS:
            run_dir = osp.join(args.work, f'seed{seed}', name)
            ckpt = osp.join(run_dir, f'iter_{iters}.pth')
            if not osp.isfile(ckpt):
                print(f'[report] seed {seed} {name}: not trained ({ckpt} missing), skipped')
                continue
            run = publish_and_evaluate(args, config, run_dir, ckpt, f'{name}_seed{seed}')
            published[(seed, name)] = pub = run['checkpoint']
            if name == KNOB_ROW and seed == seeds[0]:  # the knob swept on the first seed
                run['knob'] = [dict(shift=0.0, beta=run['beta'], metrics=run['metrics'],
                                    intervals=run['intervals'])]
                for shift in args.shifts:
                    print(f'[report] seed {seed} {name}: budget knob shift {shift:+g}')
                    r = evaluate(config, pub, osp.join(args.out_dir, 'eval', f'knob{shift:+g}'),
                                 shift, bootstrap=args.bootstrap)
                    run['knob'].append(dict(shift=shift, beta=r['beta'], metrics=r['metrics'],
                                            dynamic_gmacs=r['dynamic_gmacs'],
                                            intervals=r['intervals']))
                run['knob'].sort(key=lambda p: p['shift'])
            runs[name] = run
    budgets = {}  # the BUDGETS runs of the first seed: {gamma: {name: run}}
    for budget, dirs in sorted(budget_runs(args.work, seeds[0]).items()):
        for name, run_dir in dirs.items():
            run = publish_and_evaluate(args, DGE, run_dir, osp.join(run_dir, 'iter_200.pth'),
                                       f'{name}_b{budget:g}_seed{seeds[0]}')
            budgets.setdefault(budget, {})[name] = run
    print('[report] untrained DGE model (same config, fresh weights)')
    untrained = evaluate(DGE, None, osp.join(args.out_dir, 'eval', 'untrained'),
                         bootstrap=args.bootstrap)
    first = results[seeds[0]]
    columns, gate_legend = None, None
    if 'dge_scratch' in first:
        columns, gate_legend = gate_picture(DGE, first['dge_scratch']['checkpoint'],
                                            osp.join(args.out_dir, 'gates.png'))
        rows = beta_history(osp.join(args.work, f'seed{seeds[0]}', 'dge_scratch'))
        if rows:
            plot_beta(rows, osp.join(args.out_dir, 'beta_curve.png'))
    plot_knob(results, osp.join(args.out_dir, 'knob.png'))
    with open(osp.join(args.out_dir, 'metafile.yml'), 'w') as f:
        f.write(metafile(results, published))
    summary = dict(seeds=seeds, runs={str(s): r for s, r in results.items()},
                   budgets={f'{b:g}': r for b, r in budgets.items()}, untrained=untrained)
    with open(osp.join(args.out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    write_markdown(args, seeds, results, budgets, untrained, columns, gate_legend)


def publish_and_evaluate(args, config, run_dir, ckpt, tag):
    """Publish a run's checkpoint as mask-rcnn_pvt-t_TAG and evaluate the published file,
    with the run's training wall time and the published path added to the result."""
    pub = publish(ckpt, osp.join(args.work, 'published', f'mask-rcnn_pvt-t_{tag}.pth'))
    print(f'[report] {tag}: published {pub}; evaluating')
    run = evaluate(config, pub, osp.join(args.out_dir, 'eval', tag), bootstrap=args.bootstrap)
    run['train_seconds'] = wall_seconds(run_dir)
    run['checkpoint'] = pub
    return run


def seed_rows(results, seeds):
    """Per model of ROWS trained on every seed: the mean ± s.d. over seeds of bbox and segm
    mAP and of beta, beside the mean half width of the evaluation's intervals, and the
    bbox mAP difference to the vanilla model of the same seed (mean ± s.d.)."""
    lines = []
    for name, _, _, label in ROWS:
        runs = [results[s][name] for s in seeds if name in results[s]]
        if len(runs) < 2 or len(runs) < len(seeds):
            continue
        cells = []
        for kind in ('bbox', 'segm'):
            cells += [mean_sd_text([r['metrics'][f'coco/{kind}_mAP'] for r in runs]),
                      mean_width_text([r.get('intervals', {}).get(kind) for r in runs])]
        cells.append(mean_sd_text([r['beta'] for r in runs]))
        base = [results[s].get('vanilla') for s in seeds]
        if name == 'vanilla' or None in base:
            cells.append('–')
        else:
            cells.append(difference_text([r['metrics']['coco/bbox_mAP'] for r in runs],
                                         [b['metrics']['coco/bbox_mAP'] for b in base]))
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    if not lines:
        return []
    return [f'Over the {len(seeds)} seeds (mean ± sample standard deviation): the s.d. is the '
            f'spread between trainings that differ only in the seed, measured on the same '
            f'validation images; the interval column is the mean ± of the evaluation alone '
            f'(one model, resampled images), for comparison. The last column compares each '
            f'model with the vanilla model of its own seed (per seed, then mean ± s.d.).', '',
            '| model | bbox mAP | bbox interval ± | segm mAP | segm interval ± | β | '
            'bbox mAP − vanilla, same seed |',
            '| --- | --- | --- | --- | --- | --- | --- |'] + lines + ['']


def budget_runs(work, seed):
    """The retrofit and fine-tune folders run_demo.sh's BUDGETS made for ``seed``:
    {budget: {'retrofit': dir, 'retrofit_ft': dir}} (finished runs only)."""
    found = {}
    for name in ('retrofit', 'retrofit_ft'):
        for d in glob.glob(osp.join(work, f'seed{seed}', f'{name}_b*')):
            budget = float(osp.basename(d)[len(name) + 2:])
            if osp.isfile(osp.join(d, 'iter_200.pth')):
                found.setdefault(budget, {})[name] = d
    return found


def budget_table(results, budgets, seed):
    """gamma against the inference beta on the validation images, with mAP, for the
    retrofit and its fine-tune: the main runs at 0.5, the BUDGETS runs at the others."""
    if not budgets:
        return []
    rows = dict(budgets)
    rows.setdefault(0.5, {n: results[seed][n] for n in ('retrofit', 'retrofit_ft')
                          if n in results[seed]})
    lines = [f'The budget asked (γ) against β at inference on the {results[seed]["vanilla"]["images"]} '
             f'held-out validation images, seed {seed} (run_demo.sh BUDGETS; the routers are '
             f'calibrated on training images when training ends):', '',
             '| γ | retrofit β | retrofit β − γ | retrofit bbox mAP | fine-tune β | '
             'fine-tune β − γ | fine-tune bbox mAP |', '| --- | --- | --- | --- | --- | --- | --- |']
    for gamma in sorted(rows):
        cells = []
        for name in ('retrofit', 'retrofit_ft'):
            r = rows[gamma].get(name)
            if r is None:
                cells += ['n/a'] * 3
                continue
            cells += [f"{r['beta']:.3f}", f"{r['beta'] - gamma:+.3f}",
                      interval_text(r['metrics']['coco/bbox_mAP'], r.get('intervals', {}).get('bbox'))]
        lines.append(f'| {gamma:g} | ' + ' | '.join(cells) + ' |')
    return lines + ['']


def interval_note(resamples, images):
    if not resamples:
        return ['No bootstrap intervals were measured (`--bootstrap 0`).']
    return [f'± is half the width of the 95 % bootstrap interval of that mAP over the '
            f'validation images ({resamples} resamples of {images} images with replacement, '
            f'each scored as COCO scores a set): the evaluation\'s own noise for that one '
            f'model. The spread between seeds is the training\'s, which the interval does '
            f'not include.']


def write_markdown(args, seeds, results, budgets, untrained, columns, gate_legend):
    def col(name, get, fmt='{:.3f}'):
        return spread([get(results[s][name]) if name in results[s] else None for s in seeds],
                      fmt)

    def map_col(name, kind):
        """Each seed's mAP with the half width of its bootstrap interval, and mean, s.d."""
        runs = [results[s][name] for s in seeds if name in results[s]]
        return interval_spread([r['metrics'][f'coco/{kind}_mAP'] for r in runs],
                               [r.get('intervals', {}).get(kind) for r in runs])

    images = next(r['images'] for s in seeds for r in results[s].values())
    lines = ['# DGE demo report: accuracy against complexity', '',
             f'Mask R-CNN PVT-T on the shapes data ({images} validation images, 128 px), CPU. '
             f'Seeds: {", ".join(map(str, seeds))}; each cell lists one value per seed '
             f'and, with several, their mean and standard deviation.', '']
    lines += interval_note(args.bootstrap, images) + [
        '', '| model | bbox mAP | segm mAP | β | backbone GMACs | train wall time (s) | '
        'test ms/image |', '| --- | --- | --- | --- | --- | --- | --- |']
    for name, _, _, label in ROWS:
        lines.append(
            f"| {label} | {map_col(name, 'bbox')} | {map_col(name, 'segm')} "
            f"| {col(name, lambda r: r['beta'])} "
            f"| {col(name, lambda r: r['dynamic_gmacs'], '{:.4f}')} "
            f"| {col(name, lambda r: r['train_seconds'], '{:.0f}')} "
            f"| {col(name, lambda r: r['test_ms_per_image'], '{:.0f}')} |")
    m = untrained['metrics']
    u = untrained.get('intervals', {})
    lines += [f"| untrained DGE (fresh weights) | {interval_spread([m['coco/bbox_mAP']], [u.get('bbox')])} | "
              f"{interval_spread([m['coco/segm_mAP']], [u.get('segm')])} | {untrained['beta']:.3f} | "
              f"{untrained['dynamic_gmacs']:.4f} | 0 | {untrained['test_ms_per_image']:.0f} |", '']
    lines += seed_rows(results, seeds) + budget_table(results, budgets, seeds[0])
    for seed in seeds:
        sweep = results[seed].get(KNOB_ROW, {}).get('knob')
        if not sweep:
            continue
        lines += [f'Budget knob on the fine-tuned retrofit, seed {seed} (`dge_cfg.logit_shift`, '
                  f'no retraining; knob.png):', '',
                  '| shift | β | backbone GMACs | bbox mAP | segm mAP |',
                  '| --- | --- | --- | --- | --- |']
        for p in sweep:
            g = p.get('dynamic_gmacs', results[seed][KNOB_ROW]['dynamic_gmacs'])
            iv = p.get('intervals', {})
            lines.append(f"| {p['shift']:+g} | {p['beta']:.3f} | {g:.4f} | "
                         f"{interval_spread([p['metrics']['coco/bbox_mAP']], [iv.get('bbox')])} | "
                         f"{interval_spread([p['metrics']['coco/segm_mAP']], [iv.get('segm')])} |")
        lines.append('')
    static = [r['static_gmacs'] for s in seeds for r in results[s].values()]
    lines += [
        f'Backbone MACs include the patch embeddings; the vanilla backbone costs '
        f'{static[0]:.4f} G per image. β and MACs are means over the validation images at '
        f'inference; train wall time is what run_demo.sh measured for that step on this '
        f'machine; test ms/image is the whole detector on CPU, loading included.', '',
        'Training each model saw: vanilla and DGE from scratch 600 iterations with labels; '
        'the retrofit the vanilla 600, then 200 of distillation without labels (routers '
        'only); the fine-tune those, then 200 more with labels: 800 labelled iterations in '
        'all, so part of its lead over the vanilla row can be the longer training.', '',
        'What this is evidence of: on this small synthetic task, how much accuracy each way of '
        'getting a DGE model keeps against the vanilla detector trained the same way, and '
        'that the budget knob trades accuracy for β without retraining. What it is not: a '
        f'measure of COCO/ImageNet accuracy ({images} validation images of three shapes, 600 '
        'iterations from scratch); differences smaller than the intervals, or than the '
        'spread between seeds, are noise.']
    if columns:
        lines += ['', f"`gates.png` (DGE from scratch, seed {seeds[0]}): columns "
                  f"{', '.join(columns)}; {gate_legend}. `beta_curve.png`: its β during training."]
    with open(osp.join(args.out_dir, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
