"""PVTv2 / MiT checkpoints: mmdet's PVTv2, mmseg's MiT, and the official PVTv2 and
SegFormer releases (one layout)."""
from typing import Dict

from torch import Tensor

from .common import convert_detected, rename, split_heads
from .pvt import _mmdet_rules, convert_mmdet_pvt

# the Mix-FFN in mmdet and mmseg: fc1, depth-wise conv, activation, dropout, fc2, dropout
MMDET_V2_RULES = _mmdet_rules(0, {'0': 'ffn.fc1', '1': 'ffn.dwconv', '4': 'ffn.fc2'})


def _stage(m, group=1):
    return f'stages.{int(m.group(group)) - 1}.'


OFFICIAL_RULES = [
    (r'^patch_embed(\d)\.proj\.', lambda m: _stage(m) + 'patch_embed.projection.'),
    (r'^patch_embed(\d)\.norm\.', lambda m: _stage(m) + 'patch_embed.norm.'),
    (r'^block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.',
     lambda m: _stage(m) + f'blocks.{m.group(2)}.ffn.dwconv.'),
    (r'^block(\d)\.(\d+)\.mlp\.(fc1|fc2)\.',
     lambda m: _stage(m) + f'blocks.{m.group(2)}.ffn.{m.group(3)}.'),
    (r'^block(\d)\.(\d+)\.(norm1|norm2|attn\.q|attn\.kv|attn\.proj|attn\.sr|attn\.norm)\.',
     lambda m: _stage(m) + f'blocks.{m.group(2)}.{m.group(3)}.'),
    (r'^norm(\d)\.', lambda m: _stage(m) + 'norm.'),
]


def convert_official_pvtv2(state: Dict[str, Tensor]):
    """whai362/PVT v2 and NVlabs/SegFormer (``mit_b*.pth``) keys -> ours. Returns (backbone,
    head)."""
    backbone, head = split_heads(state)
    return rename(backbone, OFFICIAL_RULES), head


def convert_mmdet_pvtv2(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """mmdet ``PyramidVisionTransformerV2`` and mmseg ``MixVisionTransformer`` keys -> ours
    (the two share one layout)."""
    return convert_mmdet_pvt(state, MMDET_V2_RULES, first_block=0)


def detect_and_convert_pvtv2(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Convert a PVTv2 / MiT checkpoint of any supported layout to ours (heads dropped)."""
    return convert_detected(state, [
        ('vtpack_mm', 'stages.', None),
        ('official PVTv2/SegFormer', 'patch_embed1.', lambda s: convert_official_pvtv2(s)[0]),
        ('mmdet/mmseg', 'layers.0.0.projection', convert_mmdet_pvtv2)], 'PVTv2/MiT')
