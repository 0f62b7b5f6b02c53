"""DeiT / ViT checkpoints: official DeiT and timm, vtpack's DeiT(-DGE), mmpretrain's."""
import re
from typing import Dict

from torch import Tensor

from .common import rename, split_heads

TIMM_RULES = [
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'blocks.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'blocks.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.', r'blocks.\1.'),
    (r'^(cls_token|pos_embed)$', r'\1'),
    (r'^norm\.', 'norm.'),
]

MMPRETRAIN_RULES = [
    (r'^patch_embed\.projection\.', 'patch_embed.projection.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.', r'blocks.\1.'),
    (r'^(cls_token|pos_embed)$', r'\1'),
    (r'^(ln1|norm1)\.', 'norm.'),
    (r'^ln2\.', 'avg_norm.'),  # the norm of out_type='avg_featmap'
    (r'^pre_norm\.', 'pre_norm.'),  # pre_norm=True (CLIP); an Identity has no keys
]


def _split_qkv(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Fused qkv (3C rows: q, k, v) -> our q (C rows) and kv (2C rows: k, v)."""
    out = {}
    for key, value in state.items():
        m = re.match(r'^(.*\.attn\.)qkv\.(weight|bias)$', key)
        if m:
            C = value.shape[0] // 3
            out[f'{m.group(1)}q.{m.group(2)}'] = value[:C]
            out[f'{m.group(1)}kv.{m.group(2)}'] = value[C:]
        else:
            out[key] = value
    return out


def convert_deit(state: Dict[str, Tensor]):
    """Official DeiT / timm ViT / vtpack DeiT keys -> ours. Returns (backbone, head)."""
    if 'dist_token' in state:
        raise KeyError('distilled DeiT checkpoints (dist_token) are not supported; use the '
                       'non-distilled DeiT weights')
    backbone, head = split_heads(state)
    backbone = {k: v for k, v in backbone.items() if not k.endswith('.dge.splits')}
    return rename(_split_qkv(backbone), TIMM_RULES), head


def convert_mmpretrain_vit(state: Dict[str, Tensor]):
    """mmpretrain VisionTransformer/DeiT (backbone keys, no 'backbone.' prefix) -> ours."""
    return rename(_split_qkv(state), MMPRETRAIN_RULES)


def detect_and_convert_deit(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Convert a DeiT checkpoint of any supported layout to ours (heads dropped)."""
    keys = list(state)
    if any(k.startswith('blocks.') and '.ffn.' in k for k in keys):
        return state
    if any(k.startswith('blocks.') for k in keys):
        return convert_deit(state)[0]
    if any(k.startswith('layers.') for k in keys):
        return convert_mmpretrain_vit(state)
    raise KeyError(f'unrecognised DeiT checkpoint layout (first keys: {keys[:4]}); expected '
                   f'vtpack_mm, official/timm/vtpack (blocks.*) or mmpretrain (layers.*) keys')
