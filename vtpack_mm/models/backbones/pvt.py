"""PVT v1 and DPVT: pyramid vision transformers, vanilla or with Dynamic Grained Encoders."""
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

from ...dge import ComplexityMeter, linear_macs, norm_macs, split_dge_cfg
from ...registry import MODELS
from ..layers import EncoderLayer
from ..layers.position import resize_pos_embed
from .base import TransformerBackbone, check_arch

PVT_ARCHS = {
    name: dict(depths=depths, embed_dims=[64, 128, 320, 512], num_heads=[1, 2, 5, 8],
               mlp_ratios=[8, 8, 4, 4], sr_ratios=[8, 4, 2, 1])
    for name, depths in dict(tiny=[2, 2, 2, 2], small=[3, 4, 6, 3], medium=[3, 4, 18, 3],
                             large=[3, 8, 27, 3]).items()
}
ARCH_KEYS = ('depths', 'embed_dims', 'num_heads', 'mlp_ratios', 'sr_ratios')
OUT_TYPES = ('featmap', 'cls_token', 'avg_featmap')


class PVTStage(BaseModule):
    """Patch embedding, absolute position table (PVT v1; None without one), encoder layers
    and (PVTv2) the norm after them, of one stage."""

    def __init__(self, in_channels, embed_dims, patch_size, stride, padding, pos_hw,
                 num_extra, blocks, drop_rate, norm_cfg, stage_norm_cfg=None):
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, embed_dims, kernel_size=patch_size,
                                      stride=stride, padding=padding, norm_cfg=norm_cfg)
        self.pos_hw = tuple(pos_hw) if pos_hw else None
        self.num_extra = num_extra
        self.pos_embed = nn.Parameter(torch.zeros(
            1, num_extra + pos_hw[0] * pos_hw[1], embed_dims)) if pos_hw else None
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = ModuleList(blocks)
        self.norm = build_norm_layer(stage_norm_cfg, embed_dims)[1] if stage_norm_cfg else None

    def embed_macs(self, hw) -> int:
        conv = self.patch_embed.projection
        k = conv.kernel_size[0] * conv.kernel_size[1]
        return linear_macs(hw[0] * hw[1], conv.in_channels * k, conv.out_channels) + \
            norm_macs(hw[0] * hw[1], conv.out_channels)

    def position(self, hw) -> Tensor:
        return resize_pos_embed(self.pos_embed, self.pos_hw, hw, self.num_extra)

    def out_hw(self, hw):
        """The map size this stage's patch embedding makes of an ``hw`` input."""
        conv = self.patch_embed.projection
        return tuple((s + 2 * p - k) // st + 1 for s, p, k, st in
                     zip(hw, conv.padding, conv.kernel_size, conv.stride))


@MODELS.register_module()
class PVT(TransformerBackbone):
    """Pyramid Vision Transformer v1, optionally with Dynamic Grained Encoders.

    `Pyramid Vision Transformer <https://arxiv.org/abs/2102.12122>`_ with the sparse-query
    encoders of `Dynamic Grained Encoder for Vision Transformers
    <https://github.com/StevenGrove/vtpack>`_ (NeurIPS 2021). ``attn_cfg=dict(type='deform')``
    gives DPVT (see :class:`DPVT`).

    Args:
        arch: 'tiny', 'small', 'medium', 'large' or a dict with depths, embed_dims,
            num_heads, mlp_ratios and sr_ratios (one entry per stage). Default 'small'.
        in_channels: input channels. Default 3.
        pretrain_img_size: image size the position tables are made for. Default 224.
        patch_sizes: patch-embedding kernel per stage. Default (4, 2, 2, 2).
        strides: patch-embedding stride per stage; None = ``patch_sizes``. Default None.
        paddings: patch-embedding padding per stage; None = 0 (PVT v1) or half the kernel
            (PVTv2). Default None.
        out_indices: stages whose output is returned. Default (0, 1, 2, 3).
        out_type: last stage's output: 'featmap' (B, C, H, W), 'cls_token' (B, C) (needs
            ``with_cls_token``) or 'avg_featmap' (B, C). Default 'featmap'.
        with_cls_token: a class token in the last stage (the official classifier). Default
            False.
        final_norm: LayerNorm after the last stage. Default False.
        qkv_bias: bias in q/kv projections. Default True.
        drop_rate, attn_drop_rate: dropout rates. Default 0.
        drop_path_rate: stochastic depth, linearly increasing over layers. Default 0.1.
        attn_cfg: the attention of every layer: dict(type='sra') (PVT) or
            dict(type='deform', num_points=4) (DPVT). Default PVT's.
        norm_cfg: norm layers. Default LN with eps 1e-6.
        patch_norm_cfg: norm of the patch embeddings; None = ``norm_cfg`` (as mmdet). The
            official PVT and vtpack code use LN with eps 1e-5 there.
        act_cfg: FFN activation. Default GELU.
        frozen_stages: stages 0..frozen_stages are frozen (eval mode, no grad); -1 = none.
        norm_eval: keep BatchNorm layers in eval mode in training. Default False.
        with_cp: activation checkpointing of every layer. Default False.
        dge_cfg: None (vanilla) or dict(granularities=(1, 2, 4), region_size=None,
            gumbel_tau=1.0, train_mode='dense', init_gate=0.95, stages=None, layers=None);
            ``stages``/``layers`` (global layer indices) select the wrapped layers, None =
            all.
        init_cfg: e.g. dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.']);
            official PVT/DPVT and mmdet checkpoints are converted on load.
    """
    default_attn_cfg = dict(type='sra')
    arch_zoo = PVT_ARCHS
    abs_pos_embed = True  # PVT v1: absolute position tables; PVTv2: none
    norm_after_stage = False  # PVTv2: a norm after every stage
    ffn_type = 'mlp'  # PVTv2: 'mix'
    overlap_patches = False  # PVTv2: paddings default to half the kernel

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 pretrain_img_size: Union[int, Sequence[int]] = 224,
                 patch_sizes: Sequence[int] = (4, 2, 2, 2),
                 strides: Optional[Sequence[int]] = None,
                 paddings: Optional[Sequence[int]] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 with_cls_token: bool = False,
                 final_norm: bool = False,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 attn_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 patch_norm_cfg: Optional[dict] = None,
                 act_cfg: dict = dict(type='GELU'),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 dge_cfg: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(frozen_stages, norm_eval, with_cp, init_cfg=init_cfg)
        name = type(self).__name__
        arch = check_arch(arch, self.arch_zoo, ARCH_KEYS, name)
        num_stages = len(arch['depths'])
        strides = tuple(patch_sizes if strides is None else strides)
        if paddings is None:
            paddings = [k // 2 if self.overlap_patches else 0 for k in patch_sizes]
        if any(len(arch[k]) != num_stages for k in ARCH_KEYS) or \
                {len(patch_sizes), len(strides), len(paddings)} != {num_stages}:
            raise ValueError(f'{name}: arch lists, patch_sizes, strides and paddings must have '
                             f'one entry per stage ({num_stages})')
        if with_cls_token and not self.abs_pos_embed:
            raise ValueError(f'{name}: with_cls_token needs position tables ({name} has none)')
        self.check_common(name, out_type, OUT_TYPES, with_cls_token, frozen_stages, num_stages)
        self.arch = arch
        self.num_stages = num_stages
        self.out_indices = self.check_out_indices(out_indices, num_stages, name)
        self.out_type = out_type
        self.patch_sizes = tuple(patch_sizes)
        self.strides = strides
        attn_cfg = dict(attn_cfg or self.default_attn_cfg)
        if isinstance(pretrain_img_size, int):
            pretrain_img_size = (pretrain_img_size, pretrain_img_size)
        self.pretrain_img_size = tuple(pretrain_img_size)

        total = sum(arch['depths'])
        dge_kwargs, selected = split_dge_cfg(dge_cfg, num_stages, total)
        dpr = torch.linspace(0, drop_path_rate, total).tolist()
        self.stages = ModuleList()
        in_ch, g = in_channels, 0
        for i in range(num_stages):
            dims = arch['embed_dims'][i]
            stage_attn = dict(attn_cfg)
            if stage_attn['type'] == 'sra':
                stage_attn['sr_ratio'] = arch['sr_ratios'][i]
            blocks = []
            for j in range(arch['depths'][i]):
                blocks.append(EncoderLayer(
                    dims, arch['num_heads'][i], arch['mlp_ratios'][i] * dims,
                    attn_cfg=stage_attn, qkv_bias=qkv_bias, drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate, drop_path_rate=dpr[g], act_cfg=act_cfg,
                    norm_cfg=norm_cfg, dge_cfg=dge_kwargs if selected(i, g) else None,
                    ffn_type=self.ffn_type))
                g += 1
            stride = int(np.prod(strides[:i + 1]))
            pos_hw = (self.pretrain_img_size[0] // stride,
                      self.pretrain_img_size[1] // stride) if self.abs_pos_embed else None
            extra = int(with_cls_token and i == num_stages - 1)
            self.stages.append(PVTStage(in_ch, dims, patch_sizes[i], strides[i], paddings[i],
                                        pos_hw, extra, blocks, drop_rate,
                                        patch_norm_cfg or norm_cfg,
                                        norm_cfg if self.norm_after_stage else None))
            in_ch = dims
        # every stage needs a non-empty map, and a spatial reduction needs sr_ratio tokens
        reduce = [arch['sr_ratios'][i] if attn_cfg['type'] == 'sra' else 1 for i in range(num_stages)]
        self.min_input_size = next(s for s in range(1, 1 << 16)
                                   if all(min(hw) >= r for hw, r in
                                          zip(self.stage_sizes((s, s)), reduce)))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, in_ch)) if with_cls_token else None
        self.norm = nn.LayerNorm(in_ch, eps=norm_cfg.get('eps', 1e-6)) if final_norm else None
        self._freeze_stages()

    @property
    def embed_dims(self):
        return list(self.arch['embed_dims'])

    def stage_sizes(self, hw):
        """The map size of every stage for an ``hw`` input."""
        sizes = []
        for stage in self.stages:
            hw = stage.out_hw(hw)
            sizes.append(hw)
        return sizes

    def position_tables(self):
        tables = [s.pos_embed for s in self.stages if s.pos_embed is not None]
        return tables + ([self.cls_token] if self.cls_token is not None else [])

    def frozen_modules(self, stage):
        return [self.stages[stage]]

    def group_strides(self):
        strides = np.cumprod(self.strides)
        return {f'stage{i + 1}': int(strides[i]) for i in range(self.num_stages)}

    def forward(self, x: Tensor):
        self.check_images(x)
        if min(x.shape[-2:]) < self.min_input_size:
            m = self.min_input_size
            raise ValueError(f'{type(self).__name__}: input too small: {tuple(x.shape[-2:])}; '
                             f'images must be at least {m}x{m} pixels (patch strides and '
                             f'spatial reductions of the stages)')
        meter = ComplexityMeter()
        outs = []
        B = x.shape[0]
        for i, stage in enumerate(self.stages):
            x, hw = stage.patch_embed(x)
            group = f'stage{i + 1}'
            meter.add(group, stage.embed_macs(hw))
            last = i == self.num_stages - 1
            if last and self.cls_token is not None:
                x = torch.cat([self.cls_token.expand(B, -1, -1), x], 1)
            if stage.pos_embed is not None:
                x = x + stage.position(hw)
            x = stage.pos_drop(x)
            for j, block in enumerate(stage.blocks):
                x = self.run_block(block, x, hw, meter, group, f'{group}.layer{j + 1}')
            if stage.norm is not None:
                x = stage.norm(x)
                meter.add(group, norm_macs(hw[0] * hw[1], x.shape[-1]))
            E = stage.num_extra
            if last and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                # an earlier stage gives its map whatever the last one gives
                outs.append(self.output(x, hw, E, self.out_type if last else 'featmap'))
            if not last:  # channels-last view of the map for the next patch embedding
                x = x[:, E:].reshape(B, hw[0], hw[1], -1).permute(0, 3, 1, 2)
        self.last_complexity = meter
        return tuple(outs)

    def convert_state_dict(self, state_dict):
        from ..converters import detect_and_convert_pvt
        return detect_and_convert_pvt(state_dict)

    def table_specs(self):
        return [(f'stages.{i}.pos_embed', s.pos_embed, s.pos_hw, s.num_extra, 'bilinear')
                for i, s in enumerate(self.stages) if s.pos_embed is not None]


@MODELS.register_module()
class DPVT(PVT):
    """DPVT: PVT whose attention is deformable point attention (4 points per head).

    The new framework of `Dynamic Grained Encoder for Vision Transformers
    <https://github.com/StevenGrove/vtpack>`_: each query reads ``num_points`` bilinearly
    sampled points per head around its reference point instead of spatially reduced keys.
    Same arguments as :class:`PVT`; ``attn_cfg`` defaults to
    ``dict(type='deform', num_points=4)`` and ``sr_ratios`` are unused.
    """
    default_attn_cfg = dict(type='deform', num_points=4)
