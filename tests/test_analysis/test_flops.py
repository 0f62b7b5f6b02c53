"""FLOP counting: vtpack_mm's analytic costs against mmengine's counter, and get_flops.py."""
import json
import os
import runpy
import sys

import pytest
import torch

import vtpack_mm
from vtpack_mm.analysis.flops import count_flops
from vtpack_mm.dge import dge_encoders
from vtpack_mm.ops import has_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('cls, size', [(vtpack_mm.PVT, (224, 224)), (vtpack_mm.PVT, (200, 320)),
                                       (vtpack_mm.DPVT, (256, 256)), (vtpack_mm.DeiT, (256, 256)),
                                       (vtpack_mm.MiT, (224, 224)), (vtpack_mm.PVTv2, (200, 320))])
def test_vanilla_count_agrees_with_mmengine(cls, size):
    model = cls(arch='b0' if issubclass(cls, vtpack_mm.PVTv2) else 'tiny').eval()
    with torch.no_grad():
        counted = count_flops(model, (torch.randn(1, 3, *size), ))
    analytic = model.last_complexity.total_static()
    assert abs(analytic - counted) / counted < 0.01


@pytest.mark.parametrize('cls, arch', [(vtpack_mm.PVT, 'tiny'), (vtpack_mm.MiT, 'b0')])
def test_routed_count_agrees_with_mmengine(cls, arch):
    """mmengine traces the routed pass with its actual query counts: that is the dynamic
    cost the complexity meter computes (for MiT: the Mix-FFN's convolution over the whole
    map, fc1 and fc2 over the queries)."""
    torch.manual_seed(0)
    model = cls(arch=arch, dge_cfg=dict(granularities=(1, 2, 4))).eval()
    for d in dge_encoders(model):
        d.router.gate.weight.data.normal_(0, 1)
    with torch.no_grad():
        counted = count_flops(model, (torch.randn(1, 3, 128, 128), ))
    meter = model.last_complexity
    assert 0.3 < meter.ratio().item() < 0.9
    assert abs(float(meter.total_dynamic()) - counted) / counted < 0.01


def test_pvt_small_matches_published_cost():
    """PVT-S is 3.8 GFLOPs at 224 px (PVT paper), DeiT-S 6.1G at 256 px (DGE paper)."""
    with torch.no_grad():
        pvt = vtpack_mm.PVT(arch='small').eval()
        pvt(torch.randn(1, 3, 224, 224))
        deit = vtpack_mm.DeiT(arch='small').eval()
        deit(torch.randn(1, 3, 256, 256))
    assert abs(pvt.last_complexity.total_static() / 3.8e9 - 1) < 0.02
    assert abs(deit.last_complexity.total_static() / 6.1e9 - 1) < 0.02


def run_tool(*argv, tool='get_flops.py'):
    """tools/analysis_tools/TOOL run as from the command line with ``argv``."""
    old = sys.argv
    sys.argv = [tool] + [str(a) for a in argv]
    try:
        runpy.run_path(os.path.join(ROOT, 'tools', 'analysis_tools', tool), run_name='__main__')
    finally:
        sys.argv = old


def test_get_flops_on_images(shapes, tmp_path):
    cfg = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')
    run_tool(cfg, '--images', shapes / 'coco' / 'val', '--limit', '2',
             '--out', tmp_path / 'flops.json')
    res = json.loads((tmp_path / 'flops.json').read_text())
    assert res['inputs'] == 2
    # an untrained router keeps the finest granularity: dynamic is static plus what the
    # DGE path adds (a norm on the pooled queries), a fraction of a percent
    assert res['static'] <= res['dynamic'] < 1.002 * res['static']
    assert res['static'] > res['backbone_static'] > 0
    assert abs(res['analytic_backbone'] - res['mmengine_backbone']) / res['mmengine_backbone'] < 0.01
    assert len(res['layers']) == 8


DEMO_DGE = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')


def test_get_flops_whole_model_at_a_shape(tmp_path):
    """--shape counts the whole detector at exactly H x W. On the vanilla model (DGE turned
    off through --cfg-options), our count exceeds what mmdet's own get_flops reports by
    the attention products alone, stated here from PVT-T's layout: per block 2 N M C, N
    the map's tokens, M the keys after the spatial reduction by sr."""
    run_tool(DEMO_DGE, '--shape', 96, 128, '--cfg-options', 'model.backbone.dge_cfg=None',
             '--out', tmp_path / 'flops.json')
    res = json.loads((tmp_path / 'flops.json').read_text())
    assert res['inputs'] == 1 and res['input_shape'] == [96, 128]
    attention = 0
    for stride, sr, dims in ((4, 8, 64), (8, 4, 128), (16, 2, 320), (32, 1, 512)):
        h, w = 96 // stride, 128 // stride
        attention += 2 * 2 * (h * w) * ((h // sr) * (w // sr)) * dims  # 2 blocks a stage
    assert res['static'] - res['framework_first'] == attention
    assert res['dynamic'] == res['static'] and res['beta'] == 1.0
    assert 0 < res['backbone_static'] < res['static']


def test_get_flops_at_a_target_beta(tmp_path):
    """--target-beta: untrained routers get random weights and the budget knob is set until
    the input reaches beta; the dynamic whole-model count falls by the backbone's saving."""
    run_tool(DEMO_DGE, '--shape', 128, 160, '--target-beta', 0.5, '--out', tmp_path / 'f.json')
    res = json.loads((tmp_path / 'f.json').read_text())
    # one input: beta is a step function of the shift (a step per region), so the
    # bisection ends near, not at, the target
    assert abs(res['beta'] - 0.5) < 0.05 and res['shift'] > 0
    saving = res['backbone_static'] - res['backbone_dynamic']
    assert saving > 0.3 * res['backbone_static']
    assert res['dynamic'] == pytest.approx(res['static'] - saving, rel=1e-9)


@pytest.mark.parametrize('lengths', [None, [5, 2]])
def test_deformable_sampling_is_counted_four_per_sampled_value(lengths):
    # what mmengine counts for bilinear sampling (its grid_sample handle), and what the
    # analytic cost of DeformablePointAttention assumes; the op's other steps are
    # element-wise and not counted
    from vtpack_mm.dge.queries import image_index
    from vtpack_mm.ops import deform_point_attn
    batch = None if lengths is None else image_index(lengths, 'cpu')

    class Op(torch.nn.Module):
        def forward(self, value, xy, weights):
            return deform_point_attn(value, xy, weights, batch, (3, 4))

    B, T, h, P, d = (1, 6, 2, 3, 5) if lengths is None else (2, 7, 2, 3, 5)
    inputs = (torch.randn(B, 12, h, d), torch.rand(T, h, P, 2) * 4, torch.rand(T, h, P))
    assert count_flops(Op(), inputs) == 4 * T * h * P * d


@pytest.mark.parametrize('phis', [(1, 2, 4), (2, 4), (0, 2)])
def test_routed_flops_static_is_vanilla_whatever_the_granularities(phis):
    """The static count is the vanilla model's (plus the routers), also when the finest
    granularity is not 1; the dynamic count lies between 0 and the static one."""
    from vtpack_mm.analysis.flops import routed_flops
    torch.manual_seed(0)
    x = torch.randn(1, 3, 128, 128)
    vanilla = vtpack_mm.PVT(arch='tiny').eval()
    dge = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=phis)).eval()
    with torch.no_grad():
        expected = count_flops(vanilla, (x, ))
        res = routed_flops(dge, dge, x)
    routers = res['backbone_static'] - vanilla.last_complexity.total_static()
    assert 0 < routers < 1e-3 * expected
    assert res['static'] == pytest.approx(expected + routers, rel=1e-9)
    assert 0 < res['dynamic'] <= res['static']
    if 1 not in phis:  # fresh routers pick the finest granularity: phi = 2 halves queries
        assert res['dynamic'] < 0.5 * res['static']
    torch.testing.assert_close(torch.tensor(res['dynamic'] / res['static']),
                               torch.tensor(res['beta']), rtol=0.01, atol=0)


def test_benchmark_model_times_the_whole_model(shapes, tmp_path, capsys):
    """benchmark_model.py: whole model and backbone alone, vanilla and routed, on images
    through the config's pipeline; the ratios and FLOPs it reports are its own raw data's."""
    import statistics
    run_tool(DEMO_DGE, '--images', shapes / 'coco' / 'val', '--limit', 2, '--warmup', 0,
             '--repeats', 3, '--out', tmp_path / 'b.json', tool='benchmark_model.py')
    res = json.loads((tmp_path / 'b.json').read_text())
    out = capsys.readouterr().out
    # progress: each calibration step, and mmengine's bar over the 3 timed rounds
    assert 'calibrating: step 1/30' in out and '3/3' in out, out[-2000:]
    assert res['images'] == 2 and abs(res['beta'] - 0.5) < 0.05
    assert set(res['times']) == {'vanilla', 'dge', 'vanilla-backbone', 'dge-backbone'}
    for name, base in (('dge', 'vanilla'), ('dge-backbone', 'vanilla-backbone')):
        ratio = statistics.median(b / v for b, v in zip(res['times'][base], res['times'][name]))
        assert res['speedup'][name] == ratio and res['speedup'][base] == 1.0
    # the backbone's FLOPs saving is the whole model's: nothing outside it changes
    saved = res['backbone_flops_static'] - res['backbone_flops_dynamic']
    assert res['flops_static'] - res['flops_dynamic'] == pytest.approx(saved, rel=1e-9)
    assert 1.0 < res['flops_ideal_speedup'] < res['backbone_flops_ideal_speedup']


def test_benchmark_train_reports_its_own_measurements(tmp_path):
    """benchmark_train.py: vanilla, dense and sparse training steps of the same weights;
    ratios recomputed from its raw times, FLOPs floors from its counts (dense mode's below
    sparse mode's: it also computes every granularity), peak memory measured in a process
    per variant."""
    import statistics
    run_tool('--arch', 'tiny', '--size', 64, 64, '--batch', 2, '--warmup', 0, '--repeats', 2,
             '--memory-steps', 1, '--profile', '--out', tmp_path / 't.json',
             tool='benchmark_train.py')
    res = json.loads((tmp_path / 't.json').read_text())
    assert res['optimizer'] == 'fused'
    for name in ('vanilla', 'dense', 'sparse'):
        ratio = statistics.median(b / v for b, v in zip(res['times']['vanilla'],
                                                        res['times'][name]))
        assert res['speedup'][name] == ratio
        floor = res['step_flops']['vanilla'] / res['step_flops'][name]
        assert res['flops_floor_speedup'][name] == floor
        assert res['peak_memory_growth_mib'][name] > 0
    fw = res['forward_flops']
    assert res['step_flops'] == dict(vanilla=3 * fw['vanilla'], sparse=3 * fw['sparse'],
                                     dense=fw['dense'] + 2 * fw['sparse'])
    # dense mode's forward also runs the unchosen granularities (without autograd)
    assert fw['sparse'] < fw['dense']
    assert res['flops_floor_speedup']['dense'] < res['flops_floor_speedup']['sparse']
    # both modes keep the activations of the chosen queries; dense mode also every query's
    # change (the router's gradient)
    saved = res['saved_activations_mib']
    assert saved['sparse'] < saved['dense'] < saved['vanilla']
    # the profile names the phases of a step, and only DGE variants run DGE's own ops
    # (the compiled kernels: without them the references are plain PyTorch operators)
    prof = res['profile']
    assert prof['vanilla']['dge_own_ms'] == 0
    if has_kernel(torch.zeros(1)):
        assert prof['dense']['dge_own_ms'] > 0 and prof['sparse']['dge_own_ms'] > 0
    for name in ('vanilla', 'dense', 'sparse'):
        assert all(prof[name]['phase_ms'][p] > 0 for p in ('forward', 'backward', 'optimizer'))
    assert 0.0 < res['train_beta']['sparse'] < 1.0
