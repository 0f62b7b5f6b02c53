"""The dynamic grained router: one gating logit per granularity for every region."""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import patch_means, tracing
from .geometry import RegionGeometry


def region_mean(tokens: Tensor, geo: RegionGeometry) -> Tensor:
    """(B, H*W, C) map tokens -> (B, R, C) mean over each region's valid positions."""
    B, _, C = tokens.shape
    if geo.num_regions == 1:
        return tokens.mean(1, keepdim=True)
    H, W = geo.hw  # several regions: square ones ('layer' regions are a single one)
    means = patch_means(tokens.reshape(B, H, W, C), [geo.region_hw[0]], geo.hw)[0]
    return means.reshape(B, geo.num_regions, C)


def finest_index(granularities: Sequence[int]) -> int:
    """Index of the finest granularity: the smallest positive patch side."""
    return min((g, k) for k, g in enumerate(granularities) if g > 0)[1]


class GrainedRouter(nn.Module):
    """Linear gate over region means: ``h_i = mean(z_i) W + b``.

    The weight starts at zero and the bias makes the finest granularity's probability
    ``init_gate``, so a router added to a pretrained vanilla block picks the finest
    granularity in every region at inference and the block computes exactly what it did.

    Args:
        embed_dims: channels C.
        granularities: the candidate patch sides, one logit each.
        init_gate: initial probability of the finest granularity. Default 0.95.
    """

    def __init__(self, embed_dims: int, granularities: Sequence[int], init_gate: float = 0.95):
        super().__init__()
        if not 0.0 < init_gate < 1.0:
            raise ValueError(f'init_gate must be in (0, 1), got {init_gate}')
        self.granularities = tuple(granularities)
        self.init_gate = init_gate
        self.gate = nn.Linear(embed_dims, len(self.granularities))
        # The budget knob: logits + shift * saving, where saving_k = 1 - 1 / phi_k^2 is the
        # fraction of a region's queries granularity k saves (1 for a skipped region).
        # Inference only: training always starts from the trained logits, so a shift left
        # in a config cannot change what the budget loss trains. Not a parameter and not
        # saved in checkpoints: a config or tool sets it (fold_logit_shift makes one
        # permanent, in the gate's bias).
        self.shift = 0.0
        saving = [1.0 if g == 0 else 1.0 - 1.0 / g**2 for g in self.granularities]
        self.register_buffer('saving', torch.tensor(saving), persistent=False)
        self._shift_cache = None
        self.reset_parameters()

    def reset_parameters(self):
        K = len(self.granularities)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        if K > 1:
            # softmax(b, -b, ..., -b)[0] = init_gate  <=>  exp(2b) = p (K - 1) / (1 - p)
            b = 0.5 * math.log(self.init_gate * (K - 1) / (1.0 - self.init_gate))
            with torch.no_grad():
                self.gate.bias.fill_(-b)
                self.gate.bias[finest_index(self.granularities)] = b

    def forward(self, region_feats: Tensor) -> Tensor:
        logits = self.gate(region_feats)
        if self.shift and not self.training:
            logits = logits + self._shift_term(logits.dtype)
        return logits

    def _shift_term(self, dtype) -> Tensor:
        """``shift * saving`` in ``dtype``, kept while the shift, the dtype and the
        ``saving`` buffer stay (``.to()``, ``.half()`` and the like give the module a new
        buffer)."""
        if tracing():  # the tracer's stand-in for the buffer: record the product, keep none
            return self.shift * self.saving.to(dtype)
        key = (self.shift, dtype)
        cache = self._shift_cache
        if cache is None or cache[0] != key or cache[1] is not self.saving:
            cache = self._shift_cache = (key, self.saving, self.shift * self.saving.to(dtype))
        return cache[2]

    def macs(self, num_regions: int) -> int:
        """MACs of the gate on ``num_regions`` region means."""
        return num_regions * self.gate.in_features * self.gate.out_features


def gumbel_decision(logits: Tensor, tau: float, override: Optional[Tensor] = None,
                    gumbels: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Gumbel-max choice with a straight-through gate.

    Returns ``choice`` (argmax of logits + Gumbel noise, or ``override``) and ``gate``, the
    hard one-hot of the choice in the forward pass whose gradient is that of
    ``softmax((logits + g) / tau)``. The noise ``g`` is drawn here (the logits' device's
    generator) unless ``gumbels`` gives it.
    """
    if gumbels is None:
        gumbels = -torch.empty_like(logits).exponential_().log()
    noisy = logits + gumbels
    soft = F.softmax(noisy / tau, dim=-1)
    choice = noisy.argmax(-1) if override is None else override
    hard = F.one_hot(choice, logits.shape[-1]).to(soft.dtype)
    return choice, hard + (soft - soft.detach())
