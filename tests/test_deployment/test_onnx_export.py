"""The dynamic backbones exported to ONNX keep their routing in the graph: ONNX Runtime
reproduces PyTorch on inputs that route differently, at divisible and non-divisible
sizes, at several budget shifts."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.analysis import randomize_routers
from vtpack_mm.deployment import compare_onnx, export_onnx, onnx_op_counts, onnx_session
from vtpack_mm.dge import dge_encoders

BACKBONES = dict(
    PVT=(vtpack_mm.PVT, dict(arch='tiny')),
    DPVT=(vtpack_mm.DPVT, dict(arch='tiny')),
    DeiT=(vtpack_mm.DeiT, dict(arch='tiny', img_size=64, out_type='featmap')),
    MiT=(vtpack_mm.MiT, dict(arch='b0')))


def routed(name, granularities=(1, 2, 4), region_size=None):
    torch.manual_seed(0)  # fixed weights: no input of these tests has a near-tied router
    cls, kw = BACKBONES[name]
    model = cls(**kw, dge_cfg=dict(granularities=granularities, region_size=region_size))
    model.init_weights()
    randomize_routers(model)
    return model.eval()


def inputs(size, n=3):
    g = torch.Generator().manual_seed(sum(size))
    # noise at different contrasts, and a smooth image: the routers choose differently
    xs = [torch.randn(1, 3, *size, generator=g) * (0.5 + i) for i in range(n - 1)]
    ramp = torch.linspace(-1, 1, size[1]).expand(1, 3, *size).clone()
    return xs + [ramp]


def exported_matches(model, size, n, tmp_path, each=None):
    """Export ``model`` at ``size``; ONNX Runtime matches PyTorch on ``n`` inputs (``each``
    runs after every input)."""
    path = str(tmp_path / 'b.onnx')
    export_onnx(model, torch.zeros(1, 3, *size), path)
    session = onnx_session(path)
    for x in inputs(size, n):
        diff, _ = compare_onnx(session, model, x)
        assert diff < 1e-4
        if each is not None:
            each()


@pytest.mark.parametrize('name', list(BACKBONES))
@pytest.mark.parametrize('size', [(64, 96), (72, 100)], ids=['divisible', 'ragged'])
def test_onnx_runtime_reproduces_the_routed_backbone(name, size, tmp_path):
    model = routed(name)
    path = str(tmp_path / 'b.onnx')
    export_onnx(model, torch.zeros(1, 3, *size), path)
    # two data-dependent query counts per DGE block (its phi = 1 queries, read from the
    # tokens, and its coarser ones, read from a table of their means): the routing is in
    # the graph
    counts = onnx_op_counts(path)
    assert counts.get('NonZero', 0) == 2 * len(dge_encoders(model))
    # patch and region means are block sums on the token layout: no AveragePool (slow on a
    # token map in ORT)
    assert 'AveragePool' not in counts
    # the attention scale is a constant, not computed from the query's (data-dependent)
    # shape: ONNX Runtime then fuses it into the matmul (FusedMatMul) as it does for vanilla
    assert 'Sqrt' not in counts
    session = onnx_session(path)
    betas = []
    for x in inputs(size):
        diff, shapes = compare_onnx(session, model, x)
        betas.append(round(model.last_complexity.ratio().item(), 4))
        assert diff < 1e-4, (name, size, diff)
    # the inputs took different routes through the same graph (else the test shows nothing)
    assert len(set(betas)) == len(betas), betas
    assert min(betas) < 0.9


@pytest.mark.parametrize('shift', [-2.0, 0.0, 3.0])
def test_budget_shift_is_baked_in_at_export(shift, tmp_path):
    model = routed('PVT')
    model.set_logit_shift(shift)
    exported_matches(model, (64, 96), 2, tmp_path)


@pytest.mark.parametrize('region_size', [8, 'layer'])
def test_regions_larger_than_the_coarsest_patch_export(region_size, tmp_path):
    # the router's region means come from their own pooling, not the table of patch means
    exported_matches(routed('PVT', region_size=region_size), (72, 100), 2, tmp_path)


def test_skipped_regions_export(tmp_path):
    # granularity 0 skips a region: its tokens take the zero row after the last query
    model = routed('PVT', granularities=(0, 1, 2, 4))
    model.set_logit_shift(1.0)
    skipped = []
    exported_matches(model, (72, 100), 3, tmp_path, lambda: skipped.append(
        sum(int((r.choice == 0).sum()) for r in model.last_complexity.routing)))
    assert sum(skipped) > 0


def test_export_errors_name_the_problem(tmp_path):
    model = routed('PVT')
    with pytest.raises(ValueError, match='batch size 1'):
        export_onnx(model, torch.zeros(2, 3, 64, 64), str(tmp_path / 'b.onnx'))
    with pytest.raises(TypeError, match='only tensors'):
        export_onnx(model, torch.zeros(1, 3, 64, 64), str(tmp_path / 'b.onnx'),
                    fn=lambda x: dict(feats=model(x), name='not a tensor'))


def test_router_margins_are_the_smallest_top_two_gap():
    from vtpack_mm.deployment import router_margins
    model = routed('PVT')
    x = torch.randn(1, 3, 64, 96)
    gaps = []

    def top_two_gap(mod, i, o):
        top = o.topk(2, -1).values
        gaps.append((top[..., 0] - top[..., 1]).min().item())

    hooks = [m.router.register_forward_hook(top_two_gap) for m in dge_encoders(model)]
    with torch.no_grad(), router_margins(model) as margins:
        model(x)
        for m in dge_encoders(model):  # equal logits everywhere: a tie in every region
            m.router.gate.weight.data.zero_()
            m.router.gate.bias.data.zero_()
        model(x)
    for h in hooks:
        h.remove()
    assert margins[0] == min(gaps[:len(dge_encoders(model))]) > 0
    assert margins[1] == 0
