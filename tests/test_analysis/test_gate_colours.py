"""The gate pictures put each region's chosen granularity, in the paper's colours, on the
input pixels that region covers."""
import numpy as np
import torch

import vtpack_mm
from vtpack_mm.dge import routing_maps
from vtpack_mm.visualization import gate_overlay
from vtpack_mm.visualization.gate_maps import GATE_COLOURS

PHIS = (1, 2, 4)


def test_forced_choices_are_drawn_in_their_colours():
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=PHIS)).eval()
    H, W = 128, 192
    forced = {}
    stride = 1
    for i, stage in enumerate(model.stages):
        stride *= model.patch_sizes[i]
        gy, gx = -(-H // stride // 4), -(-W // stride // 4)  # regions of 4x4 tokens
        choice = torch.arange(gy * gx).remainder(3).view(1, -1)  # phi 1, 2, 4, 1, ...
        for block in stage.blocks:
            block.dge.force_choice = choice
        forced[f'stage{i + 1}'] = (choice.view(gy, gx), stride)
    with torch.no_grad():
        model(torch.randn(1, 3, H, W))
    maps = routing_maps(model, 0)
    assert [m['group'] for m in maps] == list(forced)
    black = np.zeros((H, W, 3), np.uint8)
    for m in maps:
        choice, stride = forced[m['group']]
        picture = gate_overlay(black, m, alpha=1.0)
        side = 4 * stride  # a region in input pixels
        for ry in range(choice.shape[0]):
            for rx in range(choice.shape[1]):
                y, x = ry * side + side // 2, rx * side + side // 2
                if y < H and x < W:
                    want = GATE_COLOURS[PHIS[int(choice[ry, rx])]]
                    assert tuple(picture[y, x]) == want, (m['group'], ry, rx)


def test_gate_figure_cuts_each_region_into_its_patches():
    """draw_gates: a region at phi is crossed by S / phi - 1 patch lines (S = 4 tokens
    a region side); the title carries each stage's beta, and small inputs are upscaled."""
    from vtpack_mm.dge import forced_choice
    from vtpack_mm.visualization import draw_gates, stage_betas
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=PHIS)).eval()
    black = np.zeros((64, 64, 3), np.uint8)
    for k, phi in enumerate(PHIS):
        with torch.no_grad(), forced_choice(model, k):
            model(torch.randn(1, 3, 64, 64))
        fig = draw_gates(model, black, min_side=128)  # upscaled 2x: a token is 8 px
        head, W, gap = 24, 128, 6
        assert fig.shape[1] == 5 * W + 4 * gap and fig.shape[0] > head + W
        panel = fig[head:head + W, W + gap:2 * W + gap]  # stage 1: 16 x 16 tokens
        row = panel[3]  # inside the first row of patches (never on a horizontal line)
        # on a black image, the fill is a dark colour and a patch line half white over it
        fill = (0.3 * np.array([GATE_COLOURS[phi]])).astype(np.uint8)
        white_columns = int((row == fill // 2 + 128).all(-1).sum())
        regions = 16 // 4
        assert white_columns == regions * (4 // phi - 1), (phi, white_columns)
        betas = stage_betas(model)
        assert set(betas) == {'stage1', 'stage2', 'stage3', 'stage4'}
        assert all(0 < b <= 1 for b in betas.values())
