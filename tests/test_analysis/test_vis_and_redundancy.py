"""Gate pictures (CLI and validation hook) and the Sec. 3.1 redundancy analysis."""
import os
import runpy
import statistics
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import vtpack_mm
from vtpack_mm.analysis.redundancy import RedundancyProbe, patch_pcc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DET = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')
CLS = os.path.join(ROOT, 'configs', 'demo', 'pvt-t-dge-b0.5_200i_shapes-128.py')
SEG = os.path.join(ROOT, 'configs', 'demo', 'segformer_mit-b0-dge-b0.5_ft-200i_shapes-128.py')


def run_tool(path, *argv):
    old = sys.argv
    sys.argv = [path] + [str(a) for a in argv]
    try:
        runpy.run_path(os.path.join(ROOT, 'tools', path), run_name='__main__')
    finally:
        sys.argv = old


def test_vis_gates_draws_every_stage(shapes, tmp_path):
    run_tool('visualization/vis_gates.py', DET, '--images', shapes / 'coco' / 'val',
             '--out-dir', tmp_path, '--limit', '2', '--logit-shift', '6')
    files = sorted((tmp_path / 'vis_data' / 'vis_image').glob('*.png'))
    assert len(files) == 2
    import cv2
    img = cv2.imread(str(files[0]))
    # input + four stages, each 64 px upscaled 5x to reach 320 px, 6 px apart, under a
    # 24-px title strip and over a 30-px legend
    assert img.shape[:2] == (24 + 320 + 30, 5 * 320 + 4 * 6)


def test_vis_gates_draws_mit_stages(shapes, tmp_path):
    # SegFormer's MiT: overlapping patch embeddings, maps of ceil(H / stride)
    run_tool('visualization/vis_gates.py', SEG, '--images', shapes / 'ade' / 'images' / 'val',
             '--out-dir', tmp_path, '--limit', '2', '--logit-shift', '6')
    files = sorted((tmp_path / 'vis_data' / 'vis_image').glob('*.png'))
    assert len(files) == 2
    import cv2
    img = cv2.imread(str(files[0]))
    assert img.shape[1] > 4 * img.shape[0] / 2  # the input and four stages side by side


def test_gate_hook_logs_during_validation(shapes, tmp_path):
    cfg = Config.fromfile(DET)
    root = str(shapes / 'coco') + '/'
    for loader in ('val_dataloader', 'test_dataloader', 'train_dataloader'):
        cfg[loader].dataset.data_root = root
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.val_dataloader.batch_size = 1  # four batches: the hook draws the first two
    cfg.custom_hooks = [dict(type='vtpack_mm.GateVisualizationHook', max_images=2)]
    cfg.work_dir = str(tmp_path)
    cfg.load_from = None
    runner = Runner.from_cfg(cfg)
    runner.val()
    pictures = list(tmp_path.rglob('gates_*.png'))
    assert len(pictures) == 2


def test_patch_pcc_matches_numpy():
    x = torch.randn(1, 4 * 6, 7, dtype=torch.float64)
    pcc = patch_pcc(x, (4, 6))
    grid = x.view(4, 6, 7).numpy()
    for py in range(2):
        for px in range(3):
            patch = grid[2 * py:2 * py + 2, 2 * px:2 * px + 2].reshape(4, 7)
            mean = patch.mean(0)
            expected = [np.corrcoef(t, mean)[0, 1] for t in patch]
            np.testing.assert_allclose(pcc[0, py, px].numpy(), expected, rtol=1e-9)


def test_replacement_extremes():
    model = vtpack_mm.PVT(arch='tiny').eval()
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)[-1]
        static = model.last_complexity.total_static()
        with RedundancyProbe(model, threshold=2.0) as probe:  # nothing is above 2
            out = model(x)[-1]
        assert probe.saved_macs == 0 and torch.equal(out, ref)
        with RedundancyProbe(model, threshold=-2.0) as probe:  # every token is replaced
            model(x)
        # every layer's map is 2x-divisible here: a quarter of the queries remain
        assert 0.3 < (static - probe.saved_macs) / static < 0.8
        assert np.sum(list(probe.hist.values())[0]) == (16 * 16)


def test_analyze_redundancy_cli(shapes, tmp_path):
    run_tool('analysis_tools/analyze_redundancy.py', CLS, '--images',
             shapes / 'imagenet' / 'val', '--out-dir', tmp_path, '--limit', '3',
             '--thresholds', '0.9', '2.0')
    import json
    res = json.loads((tmp_path / 'redundancy.json').read_text())
    assert res['images'] == 3 and len(res['layers']) == 8
    assert res['curve'][-1]['complexity'] == 1.0  # threshold 2.0 replaces nothing
    assert res['curve'][1]['complexity'] < 1.0
    # no token replaced (threshold 2.0): the accuracy of the unchanged model; 3 images
    assert res['curve'][-1]['accuracy'] == res['curve'][0]['accuracy']
    assert all(round(3 * r['accuracy'], 9) == int(round(3 * r['accuracy'])) for r in res['curve'])
    assert (tmp_path / 'pcc_hist.png').is_file() and (tmp_path / 'curve.png').is_file()


def test_calibrate_budget_cli(shapes, capsys):
    run_tool('analysis_tools/calibrate_budget.py', DET, '--images', shapes / 'coco' / 'val',
             '--target', '0.5')
    out = capsys.readouterr().out
    # an untrained router picks phi=1 everywhere; the shift alone moves every region at once
    assert 'beta without shift: 1.00' in out and 'model.backbone.dge_cfg.logit_shift=' in out


def test_image_tools_take_cfg_options(shapes, capsys):
    # the config's knob set through --cfg-options reaches the model: beta before any
    # calibration differs from the untrained router's 1.0
    run_tool('analysis_tools/calibrate_budget.py', DET, '--images', shapes / 'coco' / 'val',
             '--target', '0.5', '--limit', '2', '--cfg-options',
             'model.backbone.dge_cfg.logit_shift=6')
    out = capsys.readouterr().out
    before = float(out.split('beta without shift: ')[1].split()[0])
    assert before < 0.9


@pytest.mark.parametrize('model, arch', [('pvt', 'tiny'), ('dpvt', 'tiny'), ('mit', 'b0')])
def test_benchmark_latency_cli(model, arch, tmp_path, capsys):
    import json
    run_tool('analysis_tools/benchmark_latency.py', '--model', model, '--arch', arch,
             '--size', '96', '128', '--batch', '1', '2', '--warmup', '0', '--repeats', '2',
             '--target-beta', '0.6', '--out', tmp_path / 'r.json',
             *(['--profile'] if model == 'pvt' else []))
    out = capsys.readouterr().out
    if model == 'pvt':  # one profile table per variant and batch size
        assert out.count('Self CPU time total') == 4
        assert 'dge: one forward, operators by self time' in out
    res = json.loads((tmp_path / 'r.json').read_text())
    assert set(res['batches']) == {'1', '2'}
    variants = {'vanilla', 'dge', 'dge-finest'} | ({'mmdet'} if model == 'pvt' else set())
    assert set(res['batches']['1']['stats']) == variants
    assert abs(res['calibration_beta'] - 0.6) < 0.1


def test_benchmark_ops_cli(tmp_path):
    import json
    run_tool('analysis_tools/benchmark_ops.py', '--size', '64', '96', '--stages', '0', '3',
             '--warmup', '0', '--repeats', '2', '--out', tmp_path / 'r.json')
    res = json.loads((tmp_path / 'r.json').read_text())
    assert set(res['stages']) == {'1', '4'}
    stage = res['stages']['1']
    assert stage['hw'] == [16, 24] and 0 < stage['beta'] <= 1
    assert set(stage['deform']['stats']) == {'kernel', 'reference', 'mmcv'}
    assert set(stage['pool']['stats']) == {'kernel', 'reference', 'index_add'}
    assert set(stage['unpool']['stats']) == {'kernel', 'reference', 'add'}
    assert set(stage['unpool+grad']['stats']) == {'kernel', 'reference'}
    # the reported figures are what the raw timings say: the median over rounds of the
    # paired ratio, and the median share of the DGE's own work in a layer
    for key in ('attention', 'attention+grad', 'pool', 'unpool'):
        times = stage[key]['times']
        base = 'per_image' if key.startswith('attention') else 'kernel'
        for name, ts in times.items():
            assert len(ts) == 2 and stage[key]['stats'][name]['median'] == \
                pytest.approx(statistics.median(ts))
            expected = 1 / statistics.median(b / v for b, v in zip(times[base], ts))
            assert stage[key]['speedup_of_base'][name] == pytest.approx(expected)
    t = stage['overhead_times']
    share = sorted(o / y for o, y in zip(t['overhead'], t['layer']))
    assert stage['overhead_share'] == pytest.approx(share[len(share) // 2])
