"""The dynamic backbones through ``torch.export`` and AOTInductor keep their routing in the
program: the exported program, and the package compiled from it, reproduce PyTorch on
inputs that route differently."""
import pytest
import torch

from vtpack_mm.deployment import compare_aoti, export_aoti, export_program, load_aoti
from vtpack_mm.dge import dge_encoders

from test_onnx_export import BACKBONES, inputs, routed


def nonzero_calls(program) -> int:
    return sum(1 for node in program.graph.nodes
               if node.op == 'call_function' and 'nonzero' in str(node.target))


@pytest.mark.parametrize('name', list(BACKBONES))
@pytest.mark.parametrize('size', [(64, 96), (72, 100)], ids=['divisible', 'ragged'])
def test_exported_program_reproduces_the_routed_backbone(name, size):
    model = routed(name)
    program = export_program(model, torch.zeros(1, 3, *size))
    # two data-dependent query counts per DGE block, as in the ONNX graph
    assert nonzero_calls(program) == 2 * len(dge_encoders(model))
    run = program.module()
    betas = []
    for x in inputs(size):
        diff, _ = compare_aoti(run, model, x)
        betas.append(round(model.last_complexity.ratio().item(), 4))
        assert diff < 1e-4, (name, size, diff)
    assert len(set(betas)) == len(betas), betas  # the inputs took different routes
    assert min(betas) < 0.9


def test_aoti_package_reproduces_the_routed_backbone(tmp_path):
    model = routed('PVT')
    size = (72, 100)
    path = export_aoti(model, torch.zeros(1, 3, *size), str(tmp_path / 'pvt.pt2'))
    runner = load_aoti(path)
    betas = []
    for x in inputs(size):
        diff, shapes = compare_aoti(runner, model, x)
        betas.append(round(model.last_complexity.ratio().item(), 4))
        assert diff < 1e-4, diff
        assert len(shapes) == 4
    assert len(set(betas)) == len(betas), betas


def test_aoti_export_refuses_bad_input(tmp_path):
    model = routed('PVT')
    with pytest.raises(ValueError, match='batch size 1'):
        export_program(model, torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r'\.pt2'):
        export_aoti(model, torch.zeros(1, 3, 64, 64), str(tmp_path / 'pvt.so'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_aoti(str(tmp_path / 'missing.pt2'))
