"""Pictures of the routers' choices, in the paper's Fig. 4 colours (phi = 1, 2, 4: red,
green, blue)."""
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..dge import last_complexity, routing_maps

GATE_COLOURS = {0: (128, 128, 128), 1: (230, 40, 40), 2: (40, 200, 40), 4: (40, 90, 240),
                8: (200, 40, 200)}


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


def _region_spans(n_tokens: int, region: Optional[int]):
    """(start, stop) token ranges of the regions along one side of the map."""
    if region is None:
        return [(0, n_tokens)]
    return [(a, min(a + region, n_tokens)) for a in range(0, n_tokens, region)]


def gate_panel(image: np.ndarray, choice_map: Dict, alpha: float = 0.3) -> np.ndarray:
    """The paper's Fig. 4 for one stage: each region lightly filled in its granularity's
    colour and cut into its patches (lines half white, every phi tokens), regions outlined in
    black. ``image`` is the RGB uint8 input as the backbone saw it, or that upscaled by an
    integer factor k with the map's ``stride`` multiplied by k."""
    h, w = choice_map['hw']
    t = choice_map['stride']  # one token in picture pixels
    canvas = gate_overlay(image, choice_map, alpha)
    H, W = canvas.shape[:2]
    S = choice_map['region_tokens']
    phi = choice_map['phi']
    for ri, (y0, y1) in enumerate(_region_spans(h, S)):
        for rj, (x0, x1) in enumerate(_region_spans(w, S)):
            g = int(phi[ri, rj])
            py0, py1 = min(H - 1, y0 * t), min(H, y1 * t)
            px0, px1 = min(W - 1, x0 * t), min(W, x1 * t)
            if g > 0:  # patch lines inside the region, half white so the image shows
                for y in range(y0 + g, y1, g):
                    line = canvas[min(H - 1, y * t), px0:px1]
                    line[:] = line // 2 + 128
                for x in range(x0 + g, x1, g):
                    line = canvas[py0:py1, min(W - 1, x * t)]
                    line[:] = line // 2 + 128
            canvas[py0:py1, px0] = 0  # region outline (left and top; the next region
            canvas[py0, px0:px1] = 0  # or the border closes it)
    canvas[-1, :] = 0
    canvas[:, -1] = 0
    return canvas


def _text(img: np.ndarray, text: str, x: int, y: int, colour=(0, 0, 0), size: float = 0.5):
    import cv2
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, colour, 1, cv2.LINE_AA)


def gate_figure(image: np.ndarray, choice_maps: List[Dict], betas: Dict[str, float],
                granularities: Sequence[int], min_side: int = 320) -> np.ndarray:
    """One picture: the input, then every stage's :func:`gate_panel`, each titled with the
    stage and its beta, over a legend of the granularities' colours. Small inputs are
    upscaled by an integer factor so that their shorter side is at least ``min_side``."""
    k = max(1, -(-min_side // min(image.shape[:2])))
    big = image.repeat(k, 0).repeat(k, 1)
    panels = [('input', big)] + [
        (f'{m["group"]}  beta {betas[m["group"]]:.2f}' if m['group'] in betas else m['group'],
         gate_panel(big, dict(m, stride=m['stride'] * k), alpha=0.3)) for m in choice_maps]
    H, W = big.shape[:2]
    head, foot, gap = 24, 30, 6
    out = np.full((head + H + foot, len(panels) * (W + gap) - gap, 3), 255, np.uint8)
    for i, (title, panel) in enumerate(panels):
        x = i * (W + gap)
        out[head:head + H, x:x + W] = panel
        _text(out, title, x + 4, head - 7)
    x = 6
    for g in granularities:
        out[head + H + 8:head + H + 24, x:x + 16] = GATE_COLOURS.get(int(g), (255, 255, 255))
        label = 'skip' if g == 0 else f'phi={g}'
        _text(out, label, x + 20, head + H + 21)
        x += 30 + 10 * len(label)
    _text(out, 'light lines: patches (one query each); black: regions', x + 10,
          head + H + 21, (80, 80, 80), 0.45)
    return out


def stage_betas(backbone, index: int = 0) -> Dict[str, float]:
    """beta of each stage (or of DeiT's one group of layers) for image ``index`` of the
    last forward pass."""
    ratios = last_complexity(backbone).group_ratios(index)
    return {name: float(r) for name, r in ratios.items()}


def draw_gates(backbone, image: np.ndarray, index: int = 0, min_side: int = 320) -> np.ndarray:
    """:func:`gate_figure` of image ``index`` of the backbone's last forward pass; ``image``
    is that input as RGB uint8."""
    granularities = last_complexity(backbone).routing[0].granularities
    return gate_figure(image, routing_maps(backbone, index), stage_betas(backbone, index),
                       granularities, min_side)


def legend(granularities: Sequence[int]) -> str:
    names = {1: 'red', 2: 'green', 4: 'blue', 8: 'magenta', 0: 'grey'}
    return ', '.join(f'phi={g}: {names.get(g, "white")}' for g in granularities)
