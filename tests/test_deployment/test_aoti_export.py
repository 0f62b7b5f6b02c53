"""The dynamic backbones through ``torch.export`` and AOTInductor keep their routing in the
program: the exported program, and the package compiled from it, reproduce PyTorch on
inputs that route differently, and call the compiled ops where eager inference does."""
import pytest
import torch

from vtpack_mm.deployment import compare_aoti, export_aoti, export_program, load_aoti
from vtpack_mm.dge import dge_encoders
from vtpack_mm.ops import ext

from test_onnx_export import BACKBONES, inputs, routed

# the compiled op each backbone's exported program calls, per DGE block or more
KERNELS = dict(MiT='spread_dwconv_pool', DPVT='deform_point_attn_forward')


def calls(program, what: str) -> int:
    return sum(1 for node in program.graph.nodes
               if node.op == 'call_function' and what in str(node.target))


def reproduces(run, model, size):
    """``run`` matches ``model`` within 1e-4 on three inputs that route differently."""
    betas = []
    for x in inputs(size):
        diff, _ = compare_aoti(run, model, x)
        betas.append(round(model.last_complexity.ratio().item(), 4))
        assert diff < 1e-4, (size, diff)
    assert len(set(betas)) == len(betas), betas  # the inputs took different routes
    assert min(betas) < 0.9


@pytest.mark.parametrize('name', list(BACKBONES))
@pytest.mark.parametrize('size', [(64, 96), (72, 100)], ids=['divisible', 'ragged'])
def test_exported_program_reproduces_the_routed_backbone(name, size):
    assert ext.load()
    model = routed(name)
    program = export_program(model, torch.zeros(1, 3, *size))
    # two data-dependent query counts per DGE block, as in the ONNX graph
    blocks = len(dge_encoders(model))
    assert calls(program, 'nonzero') == 2 * blocks
    for other, op in KERNELS.items():
        n = calls(program, f'vtpack_mm.{op}')
        assert (n >= blocks) if other == name else n == 0, (name, op, n)
    reproduces(program.module(), model, size)


def test_aoti_package_of_mit_calls_the_compiled_kernel(tmp_path):
    model = routed('MiT')
    size = (72, 100)
    path = export_aoti(model, torch.zeros(1, 3, *size), str(tmp_path / 'mit.pt2'))
    reproduces(load_aoti(path), model, size)


def test_aoti_export_refuses_bad_input(tmp_path):
    model = routed('PVT')
    with pytest.raises(ValueError, match='batch size 1'):
        export_program(model, torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r'\.pt2'):
        export_aoti(model, torch.zeros(1, 3, 64, 64), str(tmp_path / 'pvt.so'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_aoti(str(tmp_path / 'missing.pt2'))
