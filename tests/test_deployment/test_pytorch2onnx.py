"""tools/deployment/pytorch2onnx.py on the demo configs: the detector's backbone and neck,
a segmentor's and a classifier's raw outputs, checked in ONNX Runtime."""
import os.path as osp
import runpy

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'deployment', 'pytorch2onnx.py')
DEMO = osp.join(ROOT, 'configs', 'demo')


def export(*argv):
    main = runpy.run_path(TOOL)['main']
    return main([str(a) for a in argv])


@pytest.mark.parametrize('config, part', [
    ('mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py', 'features'),
    ('fpn_dpvt-t-dge-b0.5_200i_shapes-128.py', 'tensor'),
    ('pvt-t-dge-b0.5_200i_shapes-128.py', 'tensor')])
def test_exported_model_matches_pytorch(config, part, tmp_path, capsys):
    worst = export(osp.join(DEMO, config), '--shape', 96, 136, '--out', tmp_path / 'm.onnx',
                   '--part', part, '--target-beta', 0.6, '--verify')
    out = capsys.readouterr().out
    assert worst < 1e-4
    betas = [float(line.split('beta ')[1].split(',')[0]) for line in out.splitlines()
             if ', largest |ONNX' in line]
    assert len(betas) == 5 and len(set(betas)) > 1  # the photos and noise route differently
    # two per DGE block: its phi = 1 queries and its coarser ones
    blocks = int(out.split('data-dependent query counts (NonZero) for ')[1].split()[0])
    assert f'{2 * blocks} data-dependent query counts' in out and blocks > 0


def test_aoti_package_matches_pytorch(tmp_path, capsys):
    """An --out ending in .pt2: the classifier compiled by AOTInductor, checked the same way."""
    worst = export(osp.join(DEMO, 'pvt-t-dge-b0.5_200i_shapes-128.py'), '--shape', 96, 136,
                   '--out', tmp_path / 'm.pt2', '--part', 'tensor', '--target-beta', 0.6,
                   '--verify')
    out = capsys.readouterr().out
    assert worst < 1e-4 and osp.isfile(tmp_path / 'm.pt2')
    assert 'an AOTInductor package' in out
    betas = [float(line.split('beta ')[1].split(',')[0]) for line in out.splitlines()
             if ', largest |AOTInductor' in line]
    assert len(betas) == 5 and len(set(betas)) > 1


def test_two_stage_tensor_mode_is_refused_with_the_reason(tmp_path):
    with pytest.raises(SystemExit, match='export --part features'):
        export(osp.join(DEMO, 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py'), '--shape',
               96, 128, '--out', tmp_path / 'm.onnx', '--part', 'tensor')
