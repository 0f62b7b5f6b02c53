"""How much a segmentation mIoU on a small validation set moves with the images drawn: a
bootstrap over the validation images, each resample scored as mmseg's ``IoUMetric``
scores a set.

``IoUMetric`` keeps four areas per image and class (intersection, union, prediction,
label) and sums them over the images before dividing, so a resample is a weight per
image on those sums: an image drawn twice counts twice. The classes that no image of a
resample has in its union are left out of the mean, as ``IoUMetric`` leaves them out.
"""
from contextlib import contextmanager
from typing import Dict, List, Sequence

import numpy as np


def miou_of(intersect: np.ndarray, union: np.ndarray, weights: np.ndarray) -> float:
    """mIoU in percent, as ``IoUMetric`` computes it, of the images weighted by
    ``weights`` (n,); ``intersect`` and ``union`` are (n, classes) areas."""
    i, u = weights @ intersect, weights @ union
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(u > 0, i / np.where(u > 0, u, 1), np.nan)
    if np.isnan(iou).all():
        raise ValueError('no class occurs in any image: the mIoU is undefined')
    return float(np.nanmean(iou) * 100)


def bootstrap_miou(areas: Sequence[Sequence], resamples: int = 500, level: float = 0.95,
                   seed: int = 0) -> Dict[str, float]:
    """The mIoU of the per-image ``areas`` (``IoUMetric``'s results: per image a tuple
    whose first two entries are the (classes,) intersection and union areas) and its
    bootstrap percentile interval: ``resamples`` draws of as many images as there are,
    with replacement. Returns miou, low, high, half_width, images and resamples, like
    :func:`~vtpack_mm.analysis.coco_bootstrap.bootstrap_map`."""
    if not areas:
        raise ValueError('no per-image areas to resample: the metric saw no image')
    intersect = np.stack([np.asarray(a[0], dtype=np.float64) for a in areas])
    union = np.stack([np.asarray(a[1], dtype=np.float64) for a in areas])
    n = len(areas)
    point = miou_of(intersect, union, np.ones(n))
    rng = np.random.default_rng(seed)
    draws = [miou_of(intersect, union,
                     np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64))
             for _ in range(resamples)]
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return dict(miou=point, low=float(low), high=float(high),
                half_width=float(high - low) / 2, images=n, resamples=resamples)


@contextmanager
def kept_iou_areas():
    """Within the block, every ``IoUMetric`` evaluation appends its per-image areas to the
    yielded list (as tuples of numpy arrays) before it computes its metrics."""
    from mmseg.evaluation import IoUMetric
    kept: List[tuple] = []
    original = IoUMetric.compute_metrics

    def compute_metrics(self, results):
        kept.extend(tuple(np.asarray(t.cpu() if hasattr(t, 'cpu') else t) for t in r)
                    for r in results)
        return original(self, results)

    IoUMetric.compute_metrics = compute_metrics
    try:
        yield kept
    finally:
        IoUMetric.compute_metrics = original


__all__ = ['miou_of', 'bootstrap_miou', 'kept_iou_areas']
