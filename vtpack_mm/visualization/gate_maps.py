"""Pictures of the routers' choices, in the paper's Fig. 4 colours (phi = 1, 2, 4: red,
green, blue)."""
from typing import Dict, List, Sequence

import numpy as np
import torch

GATE_COLOURS = {0: (128, 128, 128), 1: (230, 40, 40), 2: (40, 200, 40), 4: (40, 90, 240),
                8: (200, 40, 200)}


def stage_choice_maps(backbone, index: int = 0) -> List[Dict]:
    """The chosen granularity per region of image ``index`` in the last forward pass, for
    the first DGE layer of every stage: dicts with ``group``, ``phi`` (Rh, Rw) and the
    region size in input pixels."""
    out, seen = [], set()
    stages = getattr(backbone, 'stages', None)
    if stages is None:  # single-stage backbones (DeiT)
        groups = [('layers', backbone.blocks, backbone.patch_size)]
    else:
        stride, groups = 1, []
        for i, stage in enumerate(stages):
            stride *= stage.patch_embed.projection.stride[0]
            groups.append((f'stage{i + 1}', stage.blocks, stride))
    for group, blocks, stride in groups:
        for block in blocks:
            dge = block.dge
            if dge is None or dge.last_choice is None or group in seen:
                continue
            seen.add(group)
            phis = torch.tensor(dge.granularities)
            phi = phis[dge.last_choice[index].cpu()].numpy()
            S = None if dge.region_size == 'layer' else dge.region_size
            out.append(dict(group=group, phi=phi, stride=stride, region_tokens=S,
                            hw=dge.last_queries.hw))
    return out


def gate_overlay(image: np.ndarray, choice_map: Dict, alpha: float = 0.5) -> np.ndarray:
    """Blend a region-granularity map over an RGB uint8 image of the backbone's input."""
    H, W = image.shape[:2]
    phi = choice_map['phi']
    h, w = choice_map['hw']
    # one colour per region, expanded to tokens, then to input pixels
    colours = np.array([GATE_COLOURS.get(int(p), (255, 255, 255)) for p in phi.flat],
                       np.float32).reshape(*phi.shape, 3)
    if choice_map['region_tokens'] is None:
        tok = np.broadcast_to(colours[0, 0], (h, w, 3))
    else:
        S = choice_map['region_tokens']
        tok = colours.repeat(S, 0).repeat(S, 1)[:h, :w]
    s = choice_map['stride']
    pix = tok.repeat(s, 0).repeat(s, 1)
    canvas = image.astype(np.float32).copy()
    ph, pw = min(H, pix.shape[0]), min(W, pix.shape[1])
    canvas[:ph, :pw] = (1 - alpha) * canvas[:ph, :pw] + alpha * pix[:ph, :pw]
    return canvas.clip(0, 255).astype(np.uint8)


def legend(granularities: Sequence[int]) -> str:
    names = {1: 'red', 2: 'green', 4: 'blue', 8: 'magenta', 0: 'grey'}
    return ', '.join(f'phi={g}: {names.get(g, "white")}' for g in granularities)
