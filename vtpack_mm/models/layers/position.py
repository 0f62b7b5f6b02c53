"""Absolute position tables: resizing one to another token grid."""
import torch
import torch.nn.functional as F
from torch import Tensor


def resize_pos_embed(pos: Tensor, src_hw, dst_hw, num_extra: int = 0,
                     mode: str = 'bilinear') -> Tensor:
    """Resize a (1, E + h*w, C) position table from ``src_hw`` to ``dst_hw``; the E extra
    tokens' entries (a class token's) stay as they are."""
    if tuple(src_hw) == tuple(dst_hw):
        return pos
    extra, grid = pos[:, :num_extra], pos[:, num_extra:]
    C = grid.shape[-1]
    grid = grid.reshape(1, src_hw[0], src_hw[1], C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst_hw), mode=mode, align_corners=False)
    grid = grid.flatten(2).transpose(1, 2)
    return torch.cat([extra, grid], 1) if num_extra else grid
