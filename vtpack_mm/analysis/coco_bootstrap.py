"""How much a COCO mAP on a small validation set moves with the images drawn: a bootstrap
over the validation images (resampled with replacement), each resample scored as COCO
scores a whole set.

pycocotools matches detections to ground truth image by image (``COCOeval.evaluate``) and
then pools the matches of the images it is given (``accumulate``). The matching of an
image does not depend on the other images, so it is done once; :class:`PooledMatches` does
the pooling for any multiset of images (an image drawn twice counts twice), which is what a
resample needs and what ``accumulate`` cannot take (its image list is a set).
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np


def per_image_matches(gt_file: str, results_file: str, iou_type: str = 'bbox'):
    """pycocotools' per-image matching of ``results_file`` (COCO results json) against
    ``gt_file``: (the COCOeval after ``evaluate()``, the image ids in order)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(gt_file)
        dt = gt.loadRes(results_file)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
    return ev, list(ev.params.imgIds)


class PooledMatches:
    """The per-image matches of a COCOeval, arranged to score any multiset of its images.

    Per category (the 'all' area range, the largest max-detections setting): every image's
    kept detections in one list ranked by score (stable, in image order, as COCO ranks
    them), with each detection's image, its match and ignore flags at every IoU threshold,
    and each image's count of non-ignored ground-truth objects. A multiset of images is
    then a weight per image: a detection counts as many times as its image is drawn.
    Drawn twice, an image's detections count twice at their place in the ranking, which is
    where COCO would rank a copy of the image unless another image has a detection of
    exactly the same score.
    """

    def __init__(self, ev):
        p = ev.params
        self.num_images = n_img = len(p.imgIds)
        n_area, area_all = len(p.areaRng), list(p.areaRngLbl).index('all')
        max_det = p.maxDets[-1]
        self.rec_thrs = np.asarray(p.recThrs)
        self.categories = []
        for k in range(len(p.catIds) if p.useCats else 1):
            base = k * n_area * n_img + area_all * n_img
            evals = [(i, ev.evalImgs[base + i]) for i in range(n_img)]
            evals = [(i, e) for i, e in evals if e is not None]
            positives = np.zeros(n_img, dtype=np.int64)
            for i, e in evals:
                positives[i] = np.count_nonzero(np.asarray(e['gtIgnore']) == 0)
            if not evals:
                continue
            scores = np.concatenate([e['dtScores'][:max_det] for _, e in evals])
            image = np.concatenate([np.full(len(e['dtScores'][:max_det]), i)
                                    for i, e in evals]).astype(np.int64)
            order = np.argsort(-scores, kind='mergesort')
            # a match holds the matched ground truth's id (0: none); an ignored detection
            # counts neither way
            matched = np.concatenate([e['dtMatches'][:, :max_det] for _, e in evals],
                                     axis=1)[:, order].astype(bool)
            counted = ~np.concatenate([e['dtIgnore'][:, :max_det] for _, e in evals],
                                      axis=1)[:, order].astype(bool)
            self.categories.append(dict(image=image[order], tp=matched & counted,
                                        fp=~matched & counted, positives=positives))

    def map(self, weights: np.ndarray) -> float:
        """mAP@[.5:.95] of the multiset that holds image i ``weights[i]`` times: per
        category, precision made monotone and read at the 101 recall thresholds, averaged
        over the IoU thresholds; the mean over the categories that have a non-ignored
        ground-truth object among the images drawn (-1 when none has)."""
        per_category = []
        for c in self.categories:
            positives = int(weights @ c['positives'])
            if positives == 0:
                continue
            w = weights[c['image']]
            keep = w > 0
            w = w[keep].astype(np.float64)
            tp = np.cumsum(c['tp'][:, keep] * w, axis=1)
            fp = np.cumsum(c['fp'][:, keep] * w, axis=1)
            aps = []
            for t in range(tp.shape[0]):
                recall = tp[t] / positives
                precision = tp[t] / (tp[t] + fp[t] + np.spacing(1))
                # the envelope: the best precision at this recall or any higher one
                precision = np.maximum.accumulate(precision[::-1])[::-1]
                at = np.searchsorted(recall, self.rec_thrs, side='left')
                read = np.zeros(len(self.rec_thrs))
                ok = at < len(precision)
                read[ok] = precision[at[ok]]
                aps.append(read.mean())
            per_category.append(float(np.mean(aps)))
        return float(np.mean(per_category)) if per_category else -1.0


def pooled_map(ev, image_index: Sequence[int]) -> float:
    """mAP@[.5:.95] of the images at positions ``image_index`` of ``ev.params.imgIds``
    (repeats count again), pooled as COCO pools a set (:class:`PooledMatches`)."""
    pooled = PooledMatches(ev)
    weights = np.bincount(np.asarray(list(image_index), dtype=np.int64),
                          minlength=pooled.num_images)
    return pooled.map(weights)


def bootstrap_map(gt_file: str, results_file: str, iou_type: str = 'bbox',
                  resamples: int = 500, level: float = 0.95,
                  seed: int = 0) -> Dict[str, float]:
    """The mAP of ``results_file`` and its bootstrap percentile interval over the
    validation images: ``resamples`` draws of as many images as there are, with
    replacement, each scored as COCO scores a set (:class:`PooledMatches`). Returns map, low, high, half_width
    (half the interval's width), images and resamples."""
    with open(results_file) as f:
        if not json.load(f):  # no detection at all (pycocotools cannot load an empty list)
            with open(gt_file) as g:
                n = len(json.load(g)['images'])
            return dict(map=0.0, low=0.0, high=0.0, half_width=0.0, images=n,
                        resamples=resamples)
    ev, image_ids = per_image_matches(gt_file, results_file, iou_type)
    n = len(image_ids)
    pooled = PooledMatches(ev)
    point = pooled.map(np.ones(n, dtype=np.int64))
    rng = np.random.default_rng(seed)
    draws = [pooled.map(np.bincount(rng.integers(0, n, n), minlength=n))
             for _ in range(resamples)]
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return dict(map=point, low=float(low), high=float(high),
                half_width=float(high - low) / 2, images=n, resamples=resamples)


def result_files(prefix: str, kinds: Sequence[str] = ('bbox', 'segm')) -> Dict[str, str]:
    """The results json files mmdet's CocoMetric wrote with ``outfile_prefix=prefix``."""
    return {k: f'{prefix}.{k}.json' for k in kinds if osp.isfile(f'{prefix}.{k}.json')}


def interval_text(value: float, interval: Optional[dict] = None, fmt: str = '{:.3f}') -> str:
    """'0.300 ± 0.041': a metric and the half width of its interval (from
    :func:`bootstrap_map`); the metric alone when no interval was measured."""
    text = fmt.format(value)
    return text + f" ± {fmt.format(interval['half_width'])}" if interval else text


__all__: List[str] = ['per_image_matches', 'PooledMatches', 'pooled_map', 'bootstrap_map', 'result_files',
                      'interval_text']
