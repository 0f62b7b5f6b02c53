"""The paper's Sec. 3.1 analysis of spatial redundancy in a backbone's queries.

For every encoder layer, the input tokens (extra tokens excluded) are split into 2x2
patches; the Pearson correlation (over channels) of each token with its patch's mean token
measures how redundant the token is. Replacing the tokens above a threshold by their patch
mean, and counting each patch's replaced tokens as one query, gives the accuracy /
complexity trade-off of a static, data-independent reduction.
"""
from typing import List, Optional

import numpy as np
import torch
from torch import Tensor

from ..dge import SparseQueryBlock


def patch_pcc(tokens: Tensor, hw) -> Tensor:
    """(B, H*W, C) -> (B, H//2, W//2, 4): correlation of each token with its 2x2 mean."""
    B, _, C = tokens.shape
    H, W = hw
    grid = tokens.reshape(B, H, W, C)[:, :H // 2 * 2, :W // 2 * 2]
    patches = grid.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(B, H // 2, W // 2, 4, C)
    patches = patches.to(torch.promote_types(patches.dtype, torch.float32))
    mean = patches.mean(3, keepdim=True)
    a = patches - patches.mean(-1, keepdim=True)
    b = mean - mean.mean(-1, keepdim=True)
    num = (a * b).sum(-1)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    return num / den.clamp(min=1e-12)


def encoder_layers(backbone) -> List:
    return [(name, m) for name, m in backbone.named_modules() if isinstance(m, SparseQueryBlock)]


class RedundancyProbe:
    """Forward pre-hooks on every encoder layer: histograms of the token/patch-mean
    correlation and, with ``threshold``, the replacement of redundant tokens.

    ``saved_macs`` collects, per forward pass, the MACs the replacement saves per image
    (each patch's replaced tokens computed as one query).
    """

    def __init__(self, backbone, bins: int = 40, threshold: Optional[float] = None):
        self.layers = encoder_layers(backbone)
        self.edges = np.linspace(-1, 1, bins + 1)
        self.hist = {name: np.zeros(bins) for name, _ in self.layers}
        self.threshold = threshold
        self.saved_macs = 0.0
        self._handles = []

    def __enter__(self):
        for name, layer in self.layers:
            self._handles.append(layer.register_forward_pre_hook(self._hook(name, layer)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, name, layer):

        def hook(module, args):
            x, hw = args[0], args[1]
            H, W = hw
            B, N, C = x.shape
            E = N - H * W
            tokens = x[:, E:]
            pcc = patch_pcc(tokens, hw)  # (B, h, w, 4)
            self.hist[name] += np.histogram(pcc.flatten().cpu().numpy(), self.edges)[0]
            if self.threshold is None:
                return None
            Hc, Wc = H // 2 * 2, W // 2 * 2
            grid = tokens.reshape(B, H, W, C).clone()
            core = grid[:, :Hc, :Wc].reshape(B, H // 2, 2, W // 2, 2, C)
            mean = core.mean((2, 4), keepdim=True)
            above = pcc > self.threshold
            replace = above.view(B, H // 2, W // 2, 2, 2).permute(0, 1, 3, 2, 4).unsqueeze(-1)
            grid[:, :Hc, :Wc] = torch.where(replace, mean, core).reshape(B, Hc, Wc, C)
            k = above.sum(-1)  # replaced tokens per patch; together they are one query
            saved = (k - (k > 0).long()).flatten(1).sum(1).float().mean().item()
            self.saved_macs += float(layer.query_macs(N, N, hw) -
                                     layer.query_macs(N, N - saved, hw))
            return (torch.cat([x[:, :E], grid.reshape(B, H * W, C)], 1), hw) + tuple(args[2:])

        return hook
