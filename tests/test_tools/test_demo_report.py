"""The detection demo's report: every mAP with the half width of its bootstrap interval."""
import os

from mmengine.config import Config

from vtpack_mm.analysis.evaluation import evaluate, interval_spread, spread
from run_tool import ROOT, load_tool

DGE = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')


def report_module():
    return load_tool('tools/misc/demo_report.py')


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
    # two seeds: mean 0.25, sample s.d. sqrt(0.005) = 0.0707
    assert interval_spread([0.3, 0.2], [dict(half_width=0.041), None]) == \
        '0.300 ± 0.041 / 0.200 (mean 0.250, s.d. 0.071)'
    assert interval_spread([0.3], [dict(half_width=0.02)]) == '0.300 ± 0.020'
    assert interval_spread([], []) == 'n/a'
    assert interval_spread([64.5, 60.5], [dict(half_width=1.25)] * 2, '{:.2f}') == \
        '64.50 ± 1.25 / 60.50 ± 1.25 (mean 62.50, s.d. 2.83)'
    assert '1000 resamples of 40 images' in ' '.join(m.interval_note(1000, 40))


def fake_run(bbox, segm, beta, half=0.02):
    return dict(metrics={'coco/bbox_mAP': bbox, 'coco/segm_mAP': segm}, beta=beta, images=400,
                intervals={k: dict(half_width=half) for k in ('bbox', 'segm')})


def test_seed_rows_give_mean_and_sample_sd_beside_the_evaluation_interval():
    m = report_module()
    results = {0: dict(vanilla=fake_run(0.2, 0.3, 1.0, 0.01)),
               1: dict(vanilla=fake_run(0.3, 0.3, 1.0, 0.03), retrofit=fake_run(0.1, 0.1, 0.5)),
               2: dict(vanilla=fake_run(0.4, 0.3, 1.0, 0.02))}
    lines = m.seed_rows(results, [0, 1, 2])
    rows = [line for line in lines if line.startswith('| vanilla')]
    # bbox 0.2/0.3/0.4: mean 0.3, s.d. 0.1 (n - 1); mean half width 0.02
    assert rows == ['| vanilla, trained | 0.300 ± 0.100 | 0.020 | 0.300 ± 0.000 | 0.020 | '
                    '1.000 ± 0.000 | – |']
    # the retrofit was trained on one seed of three: no row for it
    assert not [line for line in lines if 'retrofit' in line]
    assert m.seed_rows({0: results[0]}, [0]) == []
    # against the vanilla model of the same seed: +0.05, -0.05, +0.06 -> mean 0.020
    for seed, bbox in ((0, 0.25), (1, 0.25), (2, 0.46)):
        results[seed]['retrofit'] = fake_run(bbox, 0.2, 0.5)
    row = [line for line in m.seed_rows(results, [0, 1, 2]) if line.startswith('| vanilla →')]
    assert row[0].endswith('| +0.050 / -0.050 / +0.060 (+0.020 ± 0.061) |')


def test_budget_table_lists_gamma_against_inference_beta(tmp_path):
    m = report_module()
    for name in ('retrofit_b0.25', 'retrofit_ft_b0.25', 'retrofit_b0.75'):
        (tmp_path / 'seed0' / name).mkdir(parents=True)
        (tmp_path / 'seed0' / name / 'iter_200.pth').write_bytes(b'')
    (tmp_path / 'seed0' / 'retrofit_ft_b0.75').mkdir()  # unfinished: not listed
    found = m.budget_runs(str(tmp_path), 0)
    assert sorted(found) == [0.25, 0.75]
    assert sorted(found[0.25]) == ['retrofit', 'retrofit_ft'] and list(found[0.75]) == ['retrofit']
    results = {0: dict(vanilla=fake_run(0.3, 0.3, 1.0), retrofit=fake_run(0.2, 0.2, 0.51),
                       retrofit_ft=fake_run(0.3, 0.3, 0.49))}
    budgets = {0.25: dict(retrofit=fake_run(0.1, 0.1, 0.27), retrofit_ft=fake_run(0.2, 0.2, 0.26)),
               0.75: dict(retrofit=fake_run(0.25, 0.25, 0.74))}
    rows = [line for line in m.budget_table(results, budgets, 0) if line[:3] in ('| 0', '| 1')]
    assert rows == [
        '| 0.25 | 0.270 | +0.020 | 0.100 ± 0.020 | 0.260 | +0.010 | 0.200 ± 0.020 |',
        '| 0.5 | 0.510 | +0.010 | 0.200 ± 0.020 | 0.490 | -0.010 | 0.300 ± 0.020 |',
        '| 0.75 | 0.740 | -0.010 | 0.250 ± 0.020 | n/a | n/a | n/a |']
    assert m.budget_table(results, {}, 0) == []


def test_spread_gives_each_value_then_mean_and_sample_sd():
    assert spread([1.0, None, 2.0, 3.0], '{:.1f}') == '1.0 / 2.0 / 3.0 (mean 2.0, s.d. 1.0)'
    assert spread([0.25]) == '0.250' and spread([None]) == 'n/a'
