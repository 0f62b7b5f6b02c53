"""The paper's Sec. 3.1 analysis of spatial redundancy, for any checkpoint and images.

    python tools/analysis_tools/analyze_redundancy.py CONFIG [--checkpoint CKPT]
        --images DIR --out-dir DIR [--limit 50] [--size H W]
        [--thresholds 0.5 0.7 0.8 0.9 0.95 0.99] [--cfg-options k=v ...]

1. Per encoder layer, the histogram of the Pearson correlation between each token and the
   mean of its 2x2 patch (OUT_DIR/pcc_hist.png, the paper's Fig. 2a).
2. For each threshold: tokens above it are replaced by their patch mean, and each patch's
   replaced tokens count as one query. The complexity ratio is reported, and for a
   classifier with images in class folders (ImageNet layout, classes in sorted order) the
   top-1 accuracy too (OUT_DIR/curve.png, the paper's Fig. 2b).
Numbers go to OUT_DIR/redundancy.json.
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.utils import track_iter_progress

from vtpack_mm.analysis import backbone_of, build_model, image_paths, load_images
from vtpack_mm.analysis.redundancy import RedundancyProbe
from vtpack_mm.dge import forced_choice, last_complexity


def folder_labels(paths):
    classes = sorted({osp.basename(osp.dirname(p)) for p in paths})
    return [classes.index(osp.basename(osp.dirname(p))) for p in paths], classes


@torch.no_grad()
def run(model, backbone, images, labels, threshold=None):
    """(histograms or None, mean complexity ratio, top-1 accuracy or None)."""
    classifier = labels is not None
    correct, ratios = 0, []
    with RedundancyProbe(backbone, threshold=threshold) as probe:
        for i, x in enumerate(track_iter_progress(images)):
            probe.saved_macs = 0.0
            if classifier:
                logits = model(x, mode='tensor')
                logits = logits[-1] if isinstance(logits, (list, tuple)) else logits
                correct += int(logits.argmax(-1).item() == labels[i])
            else:
                backbone(x)
            static = last_complexity(backbone).total_static()
            ratios.append((static - probe.saved_macs) / static)
    acc = correct / len(images) if classifier else None
    return probe.hist, probe.edges, float(np.mean(ratios)), acc


def plot_hist(hist, edges, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(hist)
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), squeeze=False)
    centres = (edges[1:] + edges[:-1]) / 2
    for ax, name in zip(axes.flat, names):
        h = hist[name] / max(hist[name].sum(), 1)
        ax.bar(centres, h, width=edges[1] - edges[0])
        ax.set_title(name, fontsize=8)
        ax.set_xlim(-1, 1)
    for ax in list(axes.flat)[len(names):]:
        ax.axis('off')
    fig.suptitle('correlation of each token with its 2x2 patch mean')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    xs = [r['complexity'] for r in rows]
    ys = [r['accuracy'] for r in rows]
    plt.figure(figsize=(4.5, 3))
    plt.plot(xs, ys, 'o-')
    for r in rows:
        plt.annotate(f"{r['threshold']}", (r['complexity'], r['accuracy']), fontsize=7)
    plt.xlabel('complexity ratio')
    plt.ylabel('top-1 accuracy')
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--images', required=True, help='an image or a folder of images')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--limit', type=int, default=50, help='use at most this many images')
    parser.add_argument('--size', type=int, nargs=2, help='resize images to H W')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (as in tools/train.py)')
    parser.add_argument('--thresholds', type=float, nargs='+',
                        default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    backbone = backbone_of(model)
    paths = image_paths(args.images, args.limit)
    images = load_images(paths, model.cfg, args.size)
    is_classifier = type(model).__name__ == 'ImageClassifier'
    labels = folder_labels(paths)[0] if is_classifier else None

    with forced_choice(backbone, 'finest'):  # measure the vanilla computation
        hist, edges, _, base_acc = run(model, backbone, images, labels)
        rows = [dict(threshold=None, complexity=1.0, accuracy=base_acc)]
        for t in args.thresholds:
            _, _, ratio, acc = run(model, backbone, images, labels, t)
            rows.append(dict(threshold=t, complexity=ratio, accuracy=acc))
    plot_hist(hist, edges, osp.join(args.out_dir, 'pcc_hist.png'))
    centres = (edges[1:] + edges[:-1]) / 2
    layers = {n: dict(mean_pcc=float((h * centres).sum() / max(h.sum(), 1)),
                      above_0_8=float(h[centres > 0.8].sum() / max(h.sum(), 1)))
              for n, h in hist.items()}
    print(f'{len(images)} images; per layer: mean correlation, share above 0.8')
    for n, v in layers.items():
        print(f'  {n:>24s}  {v["mean_pcc"]:.3f}  {v["above_0_8"]:.3f}')
    print('threshold  complexity  top-1')
    for r in rows:
        acc = '-' if r['accuracy'] is None else f"{r['accuracy']:.3f}"
        print(f"{str(r['threshold']):>9s}  {r['complexity']:10.3f}  {acc}")
    if is_classifier:
        plot_curve(rows, osp.join(args.out_dir, 'curve.png'))
    with open(osp.join(args.out_dir, 'redundancy.json'), 'w') as f:
        json.dump(dict(images=len(images), layers=layers, curve=rows), f, indent=2)


if __name__ == '__main__':
    main()
