"""The bootstrap of a segmentation mIoU over validation images: a weight per image on
mmseg's per-image areas scores the set, a subset or a multiset as IoUMetric scores it."""
import numpy as np
import pytest
import torch
from mmseg.evaluation import IoUMetric

from vtpack_mm.analysis.iou_bootstrap import bootstrap_miou, kept_iou_areas, miou_of

CLASSES = ('background', 'square', 'disc', 'triangle')


def areas_of(num_images, seed=0, rare_class_in=(0, )):
    """IoUMetric's per-image areas of random 16x16 predictions and labels; class 3 occurs
    (in label or prediction) only in the images ``rare_class_in``."""
    g = torch.Generator().manual_seed(seed)
    areas = []
    for i in range(num_images):
        label = torch.randint(0, 3, (16, 16), generator=g)
        pred = torch.where(torch.rand(16, 16, generator=g) < 0.7, label,
                           torch.randint(0, 3, (16, 16), generator=g))
        if i in rare_class_in:
            label[:4, :4] = 3
            pred[2:6, 2:6] = 3
        areas.append(IoUMetric.intersect_and_union(pred, label, len(CLASSES), 255))
    return areas


def mmseg_miou(areas):
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=CLASSES)
    return metric.compute_metrics(list(areas))['mIoU']  # percent, rounded to 2 decimals


def as_numpy(areas):
    return [tuple(t.numpy() for t in a) for a in areas]


def test_weights_score_the_set_and_a_multiset_as_mmseg_does():
    areas = areas_of(6)
    inter = np.stack([a[0].numpy() for a in areas]).astype(np.float64)
    union = np.stack([a[1].numpy() for a in areas]).astype(np.float64)
    assert miou_of(inter, union, np.ones(6)) == pytest.approx(mmseg_miou(areas), abs=0.0051)
    # image 1 drawn three times, image 0 (the only one with class 3) not drawn: class 3
    # leaves the mean, as it does in mmseg
    w = np.array([0, 3, 1, 0, 2, 0], dtype=np.float64)
    multiset = [areas[i] for i in range(6) for _ in range(int(w[i]))]
    assert miou_of(inter, union, w) == pytest.approx(mmseg_miou(multiset), abs=0.0051)
    assert miou_of(inter, union, w) != pytest.approx(miou_of(inter, union, np.ones(6)), abs=0.1)


def test_bootstrap_interval_holds_the_point_and_shrinks_to_nothing_for_equal_images():
    result = bootstrap_miou(as_numpy(areas_of(20, rare_class_in=range(20))), resamples=200)
    assert result['images'] == 20 and result['resamples'] == 200
    assert result['low'] <= result['miou'] <= result['high']
    assert result['half_width'] > 0
    same = as_numpy(areas_of(1)) * 10
    flat = bootstrap_miou(same, resamples=50)
    assert flat['half_width'] == 0 and flat['low'] == flat['miou'] == flat['high']
    with pytest.raises(ValueError, match='no per-image areas'):
        bootstrap_miou([])


def test_kept_iou_areas_records_what_the_metric_scores_and_restores_it():
    areas = areas_of(3)
    original = IoUMetric.compute_metrics
    with kept_iou_areas() as kept:
        mmseg_miou(areas)
    assert IoUMetric.compute_metrics is original
    assert len(kept) == 3
    for got, want in zip(kept, areas):
        assert all(np.array_equal(g, w.numpy()) for g, w in zip(got, want))
    mmseg_miou(areas)  # outside the block nothing is kept
    assert len(kept) == 3
