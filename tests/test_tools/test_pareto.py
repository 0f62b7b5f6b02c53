"""tools/analysis_tools/pareto.py: PVT-T, PVT-S and PVT-S + DGE at knob points, evaluated
with intervals and timed in one run, on the small shapes data (untrained weights)."""
import json
import os

import torch

from vtpack_mm.analysis import build_model
from vtpack_mm.analysis.loading import with_data_root
from run_tool import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pareto_module():
    return load_tool('tools/analysis_tools/pareto.py')


def test_with_data_root_moves_datasets_and_evaluators():
    m = pareto_module()
    cfg = with_data_root(os.path.join(ROOT, m.CONFIGS['tiny']), '/x/coco')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/x/coco/'
    assert cfg.test_evaluator.ann_file == '/x/coco/annotations/instances_val.json'
    assert cfg.val_evaluator.ann_file == '/x/coco/annotations/instances_val.json'


def test_pareto_points_tables_and_plot(shapes, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    m = pareto_module()
    root = os.path.join(str(shapes), 'coco')
    ckpts = {}
    for name, config in m.CONFIGS.items():
        torch.manual_seed(0)
        model = build_model(with_data_root(config, root))
        ckpts[name] = str(tmp_path / f'{name}.pth')
        torch.save(dict(state_dict=model.state_dict()), ckpts[name])
    out = tmp_path / 'report'
    results = m.main(['--tiny', ckpts['tiny'], '--small', ckpts['small'], '--small-dge',
                      ckpts['small_dge'], '--out-dir', str(out), '--shifts', '0', '6',
                      '--bootstrap', '10', '--images', '1', '--backbone-shape', '64', '96',
                      '--warmup', '0', '--repeats', '2', '--threads', '1', '--data-root', root])
    assert list(results) == ['tiny', 'small', 'small_dge+0', 'small_dge+6']
    for key in ('tiny', 'small'):
        assert results[key]['beta'] == 1.0 and results[key]['beta_big'] == 1.0
    dge0, dge6 = results['small_dge+0'], results['small_dge+6']
    # the knob moves the routing at both sizes: a coarser budget costs fewer MACs
    assert dge6['beta'] < dge0['beta'] and dge6['beta_big'] < dge0['beta_big']
    # (untrained routers pick the finest granularity at shift 0: vanilla plus the routers)
    assert dge6['gmacs_big'] < min(dge0['gmacs_big'], results['small']['gmacs_big'])
    # PVT-S is deeper than PVT-T at the same widths
    assert results['small']['gmacs_big'] > results['tiny']['gmacs_big']
    for r in results.values():
        assert set(r['intervals']) == {'bbox', 'segm'}
        for scope in ('detector', 'backbone'):
            assert len(r[f'{scope}_seconds']) == 2 and r['latency'][scope]['median'] > 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['meta']['backbone_shape'] == '64x96'
    table = [line for line in (out / 'summary.md').read_text().splitlines()
             if line.startswith('| PVT')]
    assert len(table) == 4 and table[3].startswith('| PVT-S + DGE | +6 |')
    assert (out / 'pareto.png').stat().st_size > 0
