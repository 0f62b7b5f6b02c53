"""The segmentation demo's report: each mIoU with the half width of its bootstrap interval
over the validation images, and the spread over seeds beside it."""
import os

from mmengine.config import Config
from run_tool import ROOT, load_tool

from vtpack_mm.analysis.evaluation import evaluate
from vtpack_mm.native import translate_model_config

NATIVE = os.path.join(ROOT, 'configs', 'demo', 'segformer_mit-b0_1000i_shapes-128.py')


def report_module():
    return load_tool('tools/misc/seg_demo_report.py')


def test_evaluate_gives_the_miou_interval(shapes, tmp_path):
    root = os.path.join(str(shapes), 'ade') + '/'
    cfg = translate_model_config(Config.fromfile(NATIVE))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    run = evaluate(cfg, None, str(tmp_path), bootstrap=30)
    iv = run['intervals']['mIoU']
    assert iv['images'] == run['images'] and iv['resamples'] == 30
    # mmseg reports the mIoU in percent, rounded to 2 decimals
    assert abs(iv['miou'] - run['metrics']['mIoU']) <= 0.005 + 1e-9
    assert iv['low'] <= iv['miou'] <= iv['high']
    assert evaluate(cfg, None, str(tmp_path / 'none'))['intervals'] == {}


def fake_run(miou, beta, half=1.0):
    return dict(metrics={'mIoU': miou, 'aAcc': 90.0}, beta=beta, images=600,
                intervals={'mIoU': dict(half_width=half)}, dynamic_gmacs=0.1,
                train_seconds=100)


def test_seed_rows_and_table_give_intervals_spread_and_same_seed_differences(tmp_path):
    m = report_module()
    results = {0: dict(vanilla=fake_run(60.0, 1.0, 1.0), retrofit_ft=fake_run(50.0, 0.5)),
               1: dict(vanilla=fake_run(70.0, 1.0, 2.0), retrofit_ft=fake_run(66.0, 0.52)),
               2: dict(vanilla=fake_run(80.0, 1.0, 3.0))}
    lines = m.seed_rows(results, [0, 1, 2])
    # vanilla 60/70/80: mean 70, s.d. 10 (n - 1); mean half width 2
    assert [line for line in lines if line.startswith('| vanilla (')] == \
        ['| vanilla (native mmseg MiT-B0), trained | 70.00 ± 10.00 | 2.00 | 1.000 ± 0.000 | – |']
    # the fine-tune was trained on two seeds of three: no row for it
    assert not [line for line in lines if 'fine-tune' in line]
    results[2]['retrofit_ft'] = fake_run(77.0, 0.5)
    row = [line for line in m.seed_rows(results, [0, 1, 2]) if 'fine-tune' in line][0]
    # against the vanilla model of the same seed: -10, -4, -3
    assert row.endswith('| -10.00 / -4.00 / -3.00 (-5.67 ± 3.79) |')
    m.write_markdown(str(tmp_path), [0, 1, 2], results, resamples=500)
    text = (tmp_path / 'summary.md').read_text()
    assert 'Validation set: 600 images' in text
    assert '500 resamples of 600 images' in text
    assert '60.00 ± 1.00 / 70.00 ± 2.00 / 80.00 ± 3.00 (mean 70.00, s.d. 10.00)' in text
