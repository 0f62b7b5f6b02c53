"""The detection demo's report: every mAP with the half width of its bootstrap interval."""
import importlib.util
import os

from mmengine.config import Config

from vtpack_mm.analysis.evaluation import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DGE = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')


def report_module():
    spec = importlib.util.spec_from_file_location(
        'demo_report', os.path.join(ROOT, 'tools', 'misc', 'demo_report.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_gives_an_interval_for_each_coco_map(shapes, tmp_path):
    root = os.path.join(str(shapes), 'coco') + '/'
    cfg = Config.fromfile(DGE)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = \
        root + 'annotations/instances_val.json'
    run = evaluate(cfg, None, str(tmp_path), bootstrap=20)
    assert set(run['intervals']) == {'bbox', 'segm'}
    for kind, iv in run['intervals'].items():
        assert iv['images'] == run['images'] and iv['resamples'] == 20
        # mmdet reports the mAP rounded to 3 decimals
        assert abs(iv['map'] - run['metrics'][f'coco/{kind}_mAP']) <= 5e-4 + 1e-9
        assert iv['low'] <= iv['map'] <= iv['high']
    assert evaluate(cfg, None, str(tmp_path / 'none'))['intervals'] == {}


def test_map_cells():
    m = report_module()
    assert m.map_cell([0.3, 0.2], [dict(half_width=0.041), None]) == \
        '0.300 ± 0.041 / 0.200 (mean 0.250)'
    assert m.map_cell([0.3], [dict(half_width=0.02)]) == '0.300 ± 0.020'
    assert m.map_cell([], []) == 'n/a'
    assert '1000 resamples of 40 images' in ' '.join(m.interval_note(1000, 40))
