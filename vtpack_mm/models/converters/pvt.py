"""PVT v1 / DPVT checkpoints: the official release (also vtpack's layout) and mmdet's."""
import re
from typing import Dict

import torch
from torch import Tensor

from .common import convert_detected, rename, split_heads

OFFICIAL_RULES = [
    (r'^patch_embed(\d)\.proj\.', lambda m: f'stages.{int(m.group(1)) - 1}.patch_embed.projection.'),
    (r'^patch_embed(\d)\.norm\.', lambda m: f'stages.{int(m.group(1)) - 1}.patch_embed.norm.'),
    (r'^pos_embed(\d)$', lambda m: f'stages.{int(m.group(1)) - 1}.pos_embed'),
    (r'^block(\d)\.(\d+)\.mlp\.fc1\.', lambda m: f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.ffn.layers.0.0.'),
    (r'^block(\d)\.(\d+)\.mlp\.fc2\.', lambda m: f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.ffn.layers.1.'),
    (r'^block(\d)\.(\d+)\.', lambda m: f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.'),
    (r'^cls_token$', 'cls_token'),
    (r'^norm\.', 'norm.'),
]


def convert_official_pvt(state: Dict[str, Tensor]):
    """whai362/PVT v1 (and vtpack PVT/DPVT) keys -> ours. Returns (backbone, head)."""
    backbone, head = split_heads(state)
    backbone = {k: v for k, v in backbone.items() if not k.endswith('.dge.splits')}
    return rename(backbone, OFFICIAL_RULES), head


def _mmdet_rules(first_block: int, ffn: Dict[str, str]):
    """mmdet/mmseg ``layers.{stage}.{0: patch embedding, 1: layers, 2: norm}`` -> ours;
    ``first_block`` is the index of the first encoder layer in ``layers.{stage}.1`` (1
    behind PVT v1's position table, 0 in PVTv2/MiT), ``ffn`` maps the FFN's layer indices
    to our names."""

    def block(m):
        return f'stages.{m.group(1)}.blocks.{int(m.group(2)) - first_block}.'

    fc = '|'.join(ffn)
    return [
        (r'^layers\.(\d)\.0\.', r'stages.\1.patch_embed.'),
        (r'^layers\.(\d)\.1\.0\.pos_embed$', r'stages.\1.pos_embed'),
        (r'^layers\.(\d)\.2\.', r'stages.\1.norm.'),
        (r'^layers\.(\d)\.1\.(\d+)\.attn\.attn\.out_proj\.', lambda m: block(m) + 'attn.proj.'),
        (r'^layers\.(\d)\.1\.(\d+)\.attn\.(sr|norm)\.', lambda m: block(m) + f'attn.{m.group(3)}.'),
        (rf'^layers\.(\d)\.1\.(\d+)\.ffn\.layers\.({fc})\.',
         lambda m: block(m) + ffn[m.group(3)] + '.'),
        (r'^layers\.(\d)\.1\.(\d+)\.(norm1|norm2)\.', lambda m: block(m) + f'{m.group(3)}.'),
    ]


# PVT v1's FFN: fc1, activation, dropout, fc2 (1x1 convolutions in mmdet)
MMDET_V1_FFN = {'0': 'ffn.layers.0.0', '3': 'ffn.layers.1'}
MMDET_RULES = _mmdet_rules(1, MMDET_V1_FFN)


def convert_mmdet_pvt(state: Dict[str, Tensor], rules=MMDET_RULES,
                      first_block: int = 1) -> Dict[str, Tensor]:
    """mmdet ``PyramidVisionTransformer`` keys -> ours (PVT v1, absolute position tables, by
    default; ``rules``/``first_block`` of :func:`_mmdet_rules` for PVTv2 and mmseg's MiT).
    The attention's stacked ``in_proj`` splits into our q and kv, 1x1 convolutions of the
    FFN become linear layers."""
    out, rest = {}, {}
    for key, value in state.items():
        m = re.match(r'^layers\.(\d)\.1\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$', key)
        if m is None:
            rest[key] = value
            continue
        prefix = f'stages.{m.group(1)}.blocks.{int(m.group(2)) - first_block}.attn.'
        C = value.shape[0] // 3  # in_proj stacks q, k, v; our kv stacks k, v
        out[f'{prefix}q.{m.group(3)}'] = value[:C]
        out[f'{prefix}kv.{m.group(3)}'] = value[C:]
    out.update(rename(rest, rules))
    for key in list(out):
        if re.search(r'ffn\.(layers\.0\.0|layers\.1|fc1|fc2)\.weight$', key) and \
                out[key].dim() == 4:
            out[key] = out[key].flatten(1)  # 1x1 convs -> linear
    return out


def detect_and_convert_pvt(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Convert a PVT checkpoint of any supported layout to ours (heads dropped)."""
    return convert_detected(state, [
        ('vtpack_mm', 'stages.', None),
        ('official/vtpack', 'patch_embed1.', lambda s: convert_official_pvt(s)[0]),
        ('mmdet', 'layers.0.0.projection', convert_mmdet_pvt)], 'PVT')


def to_mmdet_pvt(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Our PVT v1 keys -> mmdet's ``PyramidVisionTransformer`` (the inverse of
    :func:`convert_mmdet_pvt`, for comparing the two implementations)."""
    out = {}
    for key, value in state.items():
        m = re.match(r'^stages\.(\d)\.(.*)$', key)
        if m is None:
            raise KeyError(f'{key!r} has no counterpart in mmdet\'s PVT')
        i, rest = m.group(1), m.group(2)
        if rest.startswith('patch_embed.'):
            out[f'layers.{i}.0.' + rest[len('patch_embed.'):]] = value
            continue
        if rest == 'pos_embed':
            out[f'layers.{i}.1.0.pos_embed'] = value
            continue
        b = re.match(r'^blocks\.(\d+)\.(.*)$', rest)
        p, sub = f'layers.{i}.1.{int(b.group(1)) + 1}.', b.group(2)
        if sub.startswith('attn.kv.'):
            continue
        if sub.startswith('attn.q.'):
            kind = sub.split('.')[-1]
            kv = state[f'stages.{i}.blocks.{b.group(1)}.attn.kv.{kind}']
            out[p + f'attn.attn.in_proj_{kind}'] = torch.cat([value, kv])
            continue
        if sub.startswith('ffn.layers.0.0.') or sub.startswith('ffn.layers.1.'):
            idx = '0' if sub.startswith('ffn.layers.0.0.') else '3'
            kind = sub.split('.')[-1]
            out[p + f'ffn.layers.{idx}.{kind}'] = value[..., None, None] if kind == 'weight' else value
            continue
        out[p + sub.replace('attn.proj.', 'attn.attn.out_proj.')] = value
    return out
