"""The gate pictures put each region's chosen granularity, in the paper's colours, on the
input pixels that region covers."""
import numpy as np
import torch

import vtpack_mm
from vtpack_mm.visualization import gate_overlay, stage_choice_maps
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
    maps = stage_choice_maps(model, 0)
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
