"""tools/analysis_tools/benchmark_onnx.py: its ratios are what its own timings say."""
import json
import os.path as osp
import runpy
import statistics

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_onnx.py')
CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')


def test_benchmark_onnx_reports_its_measurements(tmp_path):
    out = tmp_path / 'r.json'
    runpy.run_path(TOOL)['main']([CONFIG, '--shape', '96', '128', '--warmup', '0', '--repeats',
                                  '2', '--threads', '1', '--profile', '--out', str(out)])
    r = json.loads(out.read_text())
    assert r['largest_difference'] == max(r['differences']) < 1e-4
    assert len(r['router_margins']) == len(r['differences']) == 5
    assert min(r['router_margins']) > 0
    assert abs(r['beta'] - 0.5) < 0.05
    assert r['flops_ideal_speedup'] == r['flops_static'] / r['flops_dynamic']
    t = r['times']
    for runtime in ('ort', 'torch'):
        ratios = [v / d for v, d in zip(t[f'{runtime}-vanilla'], t[f'{runtime}-dge'])]
        assert r['speedup'][f'{runtime}-dge'] == statistics.median(ratios)
        assert r['speedup'][f'{runtime}-vanilla'] == 1.0
    assert r['ort_dge_over_torch_dge'] == statistics.median(
        a / b for a, b in zip(t['torch-dge'], t['ort-dge']))
    # the profile: the operators' kernels run within the runs, and both graphs multiply
    for name in ('vanilla', 'dge'):
        p = r['profile'][name]
        assert 0 < p['node_ms'] <= p['run_ms']
        assert p['op_ms'].get('Gemm', 0) + p['op_ms'].get('MatMul', 0) > 0
    assert 'NonZero' in r['profile']['dge']['op_ms']
    assert 'NonZero' not in r['profile']['vanilla']['op_ms']
