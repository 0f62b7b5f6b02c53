"""Summarise a trained DGE detector: COCO mAP (trained vs untrained), beta vs the budget,
static vs dynamic FLOPs, and Fig.-4-style pictures of the chosen granularities.

    python tools/misc/demo_report.py CONFIG CHECKPOINT --work-dir WORK_DIR --out OUT_DIR

WORK_DIR is the training run's folder (its vis_data/scalars.json gives the beta history).
Everything goes to OUT_DIR: summary.md, summary.json, beta_curve.png, gates.png.
"""
import argparse
import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from vtpack_mm.compat import allow_runner_checkpoints
from vtpack_mm.engine import find_dge_backbone
from vtpack_mm.visualization import gate_overlay, legend, stage_choice_maps


def evaluate(cfg, checkpoint, work_dir):
    """COCO metrics of the config's test set with ``checkpoint`` (None: untrained)."""
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.default_hooks.logger.interval = 1000
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    return {k: float(v) for k, v in metrics.items()}


def beta_history(work_dir):
    """(iteration, beta, budget) per logged training step, from the run's scalars.json."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    rows = []
    for path in files[-1:]:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'beta' in rec and 'budget' in rec:
                    rows.append((rec['iter'], rec['beta'], rec['budget']))
    return rows


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


def inference_stats(cfg, checkpoint, out_dir, num_pictures=4):
    """beta and FLOPs per validation image at inference, and the gate pictures."""
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(cfg, checkpoint, device='cpu')
    backbone = find_dge_backbone(model)
    ds = cfg.test_dataloader.dataset
    img_dir = osp.join(ds.data_root, ds.data_prefix.img)
    paths = sorted(glob.glob(osp.join(img_dir, '*.png')))
    betas, static, dynamic, rows = [], [], [], []
    for i, path in enumerate(paths):
        with torch.no_grad():
            inference_detector(model, path)
        meter = backbone.last_complexity
        betas.append(float(meter.ratio().mean()))
        static.append(meter.total_static())
        dynamic.append(float(meter.total_dynamic().mean()))
        if i < num_pictures:
            img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            h, w = model.cfg.test_dataloader.dataset.pipeline[1].scale
            img = cv2.resize(img, (w, h))
            maps = stage_choice_maps(backbone, 0)
            rows.append(np.concatenate([img] + [gate_overlay(img, m) for m in maps], 1))
    picture = np.concatenate(rows, 0)
    scale = max(1, 512 // picture.shape[1])
    picture = picture.repeat(scale, 0).repeat(scale, 1)
    cv2.imwrite(osp.join(out_dir, 'gates.png'), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return dict(images=len(paths), beta_mean=float(np.mean(betas)),
                beta_min=float(np.min(betas)), beta_max=float(np.max(betas)),
                static_gmacs=float(np.mean(static)) / 1e9,
                dynamic_gmacs=float(np.mean(dynamic)) / 1e9,
                gate_columns=['input'] + [m['group'] for m in maps],
                gate_legend=legend(backbone.dge_modules()[0].granularities))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', required=True, help='the training run folder')
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    allow_runner_checkpoints()
    os.makedirs(args.out, exist_ok=True)
    cfg = Config.fromfile(args.config)
    hook = [h for h in cfg.get('custom_hooks', []) if 'BudgetLossHook' in h['type']]
    gamma = hook[0].get('budget', 0.5) if hook else None

    trained = evaluate(cfg, args.checkpoint, osp.join(args.out, 'eval_trained'))
    untrained = evaluate(cfg, None, osp.join(args.out, 'eval_untrained'))
    rows = beta_history(args.work_dir)
    if rows:
        plot_beta(rows, osp.join(args.out, 'beta_curve.png'))
    stats = inference_stats(cfg, args.checkpoint, args.out)
    tail = [b for _, b, _ in rows[-5:]]
    summary = dict(config=args.config, checkpoint=args.checkpoint, budget=gamma,
                   trained=trained, untrained=untrained, inference=stats,
                   train_beta_last_logged=tail)
    with open(osp.join(args.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)

    def ap(m, k):
        return m.get(f'coco/{k}_mAP', float('nan'))

    lines = [
        '# DGE demo report', '',
        f'config: `{args.config}`; checkpoint: `{args.checkpoint}`', '',
        '| | bbox mAP | bbox mAP@50 | segm mAP | segm mAP@50 |', '| --- | --- | --- | --- | --- |',
        f"| trained | {ap(trained, 'bbox'):.3f} | {trained.get('coco/bbox_mAP_50', float('nan')):.3f} "
        f"| {ap(trained, 'segm'):.3f} | {trained.get('coco/segm_mAP_50', float('nan')):.3f} |",
        f"| untrained (same config, fresh weights) | {ap(untrained, 'bbox'):.3f} | "
        f"{untrained.get('coco/bbox_mAP_50', float('nan')):.3f} | {ap(untrained, 'segm'):.3f} | "
        f"{untrained.get('coco/segm_mAP_50', float('nan')):.3f} |", '',
        f"Complexity ratio beta at inference over {stats['images']} validation images: mean "
        f"{stats['beta_mean']:.3f} (min {stats['beta_min']:.3f}, max {stats['beta_max']:.3f}); "
        f'budget gamma = {gamma}.',
        f"Last logged training beta (sampled gates): {', '.join(f'{b:.3f}' for b in tail)}.", '',
        f"Backbone MACs per image: static (vanilla) {stats['static_gmacs']:.3f} G, dynamic "
        f"{stats['dynamic_gmacs']:.3f} G. Both include the patch embeddings.", '',
        f"`gates.png`: columns {', '.join(stats['gate_columns'])}; {stats['gate_legend']}.",
        '`beta_curve.png`: beta during training against the budget.']
    with open(osp.join(args.out, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
