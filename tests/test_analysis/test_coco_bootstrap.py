"""The bootstrap of COCO mAP over validation images: the pooling of per-image matches gives
pycocotools' own mAP for the whole set, for a subset and for a multiset (an image drawn
twice is scored as a copy of it would be)."""
import contextlib
import copy
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vtpack_mm.analysis.coco_bootstrap import (bootstrap_map, interval_text,
                                               per_image_matches, pooled_map)


@pytest.fixture(scope='module')
def coco_files(shapes, tmp_path_factory):
    """The shapes validation annotations and made-up detections: every object found twice
    with jittered boxes and random scores, a fifth of them with the wrong class."""
    gt_file = os.path.join(str(shapes), 'coco', 'annotations', 'instances_val.json')
    gt = json.load(open(gt_file))
    rng = np.random.default_rng(0)
    results = []
    for a in gt['annotations']:
        for spread in (3, 9):
            x, y, w, h = a['bbox']
            jx, jy, jw, jh = rng.normal(0, spread, 4)
            cat = a['category_id'] if rng.random() > 0.2 else gt['categories'][0]['id']
            results.append(dict(image_id=a['image_id'], category_id=cat,
                                bbox=[x + jx, y + jy, max(1.0, w + jw), max(1.0, h + jh)],
                                score=float(rng.random())))
    out = tmp_path_factory.mktemp('coco_bootstrap')
    res_file = str(out / 'results.bbox.json')
    json.dump(results, open(res_file, 'w'))
    return gt_file, res_file, gt, results, out


def coco_map(gt, results, image_ids=None):
    """pycocotools' mAP@[.5:.95] of ``results`` on the gt dict (optionally some images)."""
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO()
        api.dataset = copy.deepcopy(gt)
        api.createIndex()
        ev = COCOeval(api, api.loadRes(copy.deepcopy(results)), 'bbox')
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


def test_pooling_gives_cocos_map_for_the_set_and_a_subset(coco_files):
    gt_file, res_file, gt, results, _ = coco_files
    ev, ids = per_image_matches(gt_file, res_file)
    assert len(ids) == len(gt['images'])
    whole = coco_map(gt, results)
    assert 0.05 < whole < 0.95  # neither trivial nor perfect, else the test shows little
    assert pooled_map(ev, range(len(ids))) == pytest.approx(whole, abs=1e-12)
    odd = list(range(1, len(ids), 2))
    assert pooled_map(ev, odd) == pytest.approx(coco_map(gt, results, [ids[i] for i in odd]),
                                                abs=1e-12)


def test_an_image_drawn_twice_counts_as_its_copy(coco_files):
    gt_file, res_file, gt, results, _ = coco_files
    ev, ids = per_image_matches(gt_file, res_file)
    # the COCO set with image 0 copied under a new id (its objects and detections too)
    twice = copy.deepcopy(gt)
    new_id = max(ids) + 1
    twice['images'].append(dict(next(i for i in gt['images'] if i['id'] == ids[0]), id=new_id))
    next_ann = max(a['id'] for a in gt['annotations']) + 1
    for a in [a for a in gt['annotations'] if a['image_id'] == ids[0]]:
        twice['annotations'].append(dict(a, id=next_ann, image_id=new_id))
        next_ann += 1
    copied = results + [dict(r, image_id=new_id) for r in results if r['image_id'] == ids[0]]
    expected = coco_map(twice, copied)
    assert expected != pytest.approx(coco_map(gt, results), abs=1e-6)  # the copy matters
    assert pooled_map(ev, list(range(len(ids))) + [0]) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval(coco_files):
    gt_file, res_file, gt, results, _ = coco_files
    a = bootstrap_map(gt_file, res_file, resamples=200, seed=1)
    assert a == bootstrap_map(gt_file, res_file, resamples=200, seed=1)  # seeded
    assert a['map'] == pytest.approx(coco_map(gt, results), abs=1e-12)
    assert a['low'] < a['map'] < a['high'] and a['images'] == len(gt['images'])
    assert a['half_width'] == pytest.approx((a['high'] - a['low']) / 2)
    narrower = bootstrap_map(gt_file, res_file, resamples=200, seed=1, level=0.5)
    assert narrower['half_width'] < a['half_width']
    assert interval_text(a['map'], a) == f"{a['map']:.3f} ± {a['half_width']:.3f}"
    assert interval_text(a['map']) == f"{a['map']:.3f}"


def test_no_detection_at_all_scores_zero(coco_files):
    gt_file, _, gt, _, out = coco_files
    empty = str(out / 'empty.bbox.json')
    json.dump([], open(empty, 'w'))
    assert bootstrap_map(gt_file, empty, resamples=5) == dict(
        map=0.0, low=0.0, high=0.0, half_width=0.0, images=len(gt['images']), resamples=5)
