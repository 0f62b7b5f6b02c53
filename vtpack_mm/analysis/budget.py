"""The inference-time budget knob: measure beta and calibrate the router logit shift."""
import warnings
from typing import Sequence, Tuple

import torch

from ..dge import dge_encoders, last_complexity, set_logit_shift


@torch.no_grad()
def measure_beta(backbone, images: Sequence[torch.Tensor]) -> float:
    """Mean complexity ratio beta of ``backbone`` (eval mode) over ``images``."""
    backbone.eval()
    betas = []
    for x in images:
        backbone(x)
        betas.append(last_complexity(backbone).ratio().float().mean().item())
    return sum(betas) / len(betas)


@torch.no_grad()
def randomize_routers(backbone, seed: int = 0):
    """Give untrained routers random gate weights (seeded, fan-in scaled, zero bias).

    A router as initialised has zero weights, so every region gets the same logits and the
    same choice: beta then jumps between a few values as the logit shift moves, and no
    shift reaches a target in between. Random weights make the choice depend on each
    region's features, as a trained router's does, so that beta moves smoothly.
    """
    g = torch.Generator().manual_seed(seed)
    for m in dge_encoders(backbone):
        w = m.router.gate.weight
        w.copy_(torch.randn(w.shape, generator=g).to(w) * 4 / w.shape[1]**0.5)
        m.router.gate.bias.zero_()


def calibrate_logit_shift(backbone, images: Sequence[torch.Tensor], target: float,
                          low: float = -20.0, high: float = 40.0, tol: float = 0.005,
                          max_steps: int = 30, verbose: bool = False) -> Tuple[float, float]:
    """Find the shift whose mean beta over ``images`` is closest to ``target``.

    beta falls as the shift grows (every region's coarser choices gain more), so a
    bisection on [low, high] converges; the result is returned with its measured beta. The
    backbone keeps the shift found. A target not reached within ``tol`` (beyond the
    coarsest or finest choices, between two steps of beta, or not in ``max_steps``) gets a
    warning that gives the closest beta found.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f'target beta must be in [0, 1], got {target}')
    if not dge_encoders(backbone):
        raise RuntimeError('the backbone has no DGE blocks: nothing to calibrate')
    best, low0, high0 = None, low, high
    for step in range(max_steps):
        mid = 0.5 * (low + high)
        set_logit_shift(backbone, mid)
        beta = measure_beta(backbone, images)
        if verbose:
            print(f'calibrating: step {step + 1}/{max_steps}, shift {mid:+.3f} -> beta '
                  f'{beta:.4f} (target {target})', flush=True)
        if best is None or abs(beta - target) < abs(best[1] - target):
            best = (mid, beta)
        if abs(beta - target) <= tol:
            break
        if beta > target:
            low = mid
        else:
            high = mid
    set_logit_shift(backbone, best[0])
    if abs(best[1] - target) > tol:
        warnings.warn(f'target beta {target} not reached within {tol} on these images: the '
                      f'closest is {best[1]:.4f}, at logit shift {best[0]:+.3f} (shifts '
                      f'searched in [{low0}, {high0}]; beta falls as the shift grows)',
                      stacklevel=2)
    return best
