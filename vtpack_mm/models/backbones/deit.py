"""DeiT / ViT with a class token, vanilla or with Dynamic Grained Encoders."""
from typing import Optional, Sequence, Union

import torch
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import ModuleList
from torch import Tensor, nn

from ...dge import ComplexityMeter, linear_macs, split_dge_cfg
from ...registry import MODELS
from ..layers import EncoderLayer
from .base import TransformerBackbone, check_arch, resize_pos_embed

DEIT_ARCHS = dict(
    tiny=dict(embed_dims=192, depth=12, num_heads=3, mlp_ratio=4),
    small=dict(embed_dims=384, depth=12, num_heads=6, mlp_ratio=4),
    base=dict(embed_dims=768, depth=12, num_heads=12, mlp_ratio=4),
)
ARCH_KEYS = ('embed_dims', 'depth', 'num_heads', 'mlp_ratio')
OUT_TYPES = ('cls_token', 'featmap', 'avg_featmap', 'raw')


@MODELS.register_module()
class DeiT(TransformerBackbone):
    """DeiT (`Training data-efficient image transformers
    <https://arxiv.org/abs/2012.12877>`_), optionally with Dynamic Grained Encoders
    (`vtpack <https://github.com/StevenGrove/vtpack>`_, NeurIPS 2021).

    The class token is an extra token: it always stays a query of its own, and attends to
    the dense tokens.

    Args:
        arch: 'tiny', 'small', 'base' or a dict with embed_dims, depth, num_heads,
            mlp_ratio. Default 'small'.
        img_size: size the position table is made for. Default 256 (the paper trains at
            256 so that regions divide the 16x16 map evenly).
        patch_size: patch size. Default 16.
        in_channels: input channels. Default 3.
        out_indices: layers whose output is returned (negative counts from the end).
            Default -1.
        out_type: 'cls_token' (B, C), 'featmap' (B, C, H, W), 'avg_featmap' (B, C) or 'raw'
            (B, 1 + H*W, C). Default 'cls_token'.
        final_norm: LayerNorm on the last layer's output. Default True.
        interpolate_mode: how the position table is resized to other inputs. Default
            'bicubic' (as mmpretrain).
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate, norm_cfg, act_cfg,
        frozen_stages (layers 0..k and the embeddings), norm_eval, with_cp, dge_cfg
        (``layers`` selects wrapped layers), init_cfg: as in :class:`~vtpack_mm.PVT`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 img_size: Union[int, Sequence[int]] = 256,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'cls_token',
                 final_norm: bool = True,
                 interpolate_mode: str = 'bicubic',
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 dge_cfg: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(frozen_stages, norm_eval, with_cp, init_cfg=init_cfg)
        name = type(self).__name__
        arch = check_arch(arch, DEIT_ARCHS, ARCH_KEYS, name)
        depth, dims = arch['depth'], arch['embed_dims']
        self.check_common(name, out_type, OUT_TYPES, frozen_stages, depth)
        self.arch = arch
        self.embed_dims = dims
        self.out_indices = self.check_out_indices(out_indices, depth, name)
        self.out_type = out_type
        self.interpolate_mode = interpolate_mode
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size = tuple(img_size)
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(in_channels, dims, kernel_size=patch_size,
                                      stride=patch_size, padding=0)
        self.pos_hw = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pos_hw[0] * self.pos_hw[1], dims))
        self.pos_drop = nn.Dropout(drop_rate)
        dge_kwargs, selected = split_dge_cfg(dge_cfg, 1, depth)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = ModuleList([
            EncoderLayer(dims, arch['num_heads'], int(arch['mlp_ratio'] * dims),
                         attn_cfg=dict(type='sra', sr_ratio=1), qkv_bias=qkv_bias,
                         drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                         drop_path_rate=dpr[j], act_cfg=act_cfg, norm_cfg=norm_cfg,
                         dge_cfg=dge_kwargs if selected(0, j) else None)
            for j in range(depth)
        ])
        self.norm = nn.LayerNorm(dims, eps=norm_cfg.get('eps', 1e-6)) if final_norm else None
        self._freeze_stages()

    def position_tables(self):
        return [self.pos_embed, self.cls_token]

    def routing_groups(self):
        return [('layers', self.blocks, self.patch_size)]

    def frozen_modules(self, stage):
        if stage == 0:
            return [self.patch_embed, self.pos_embed, self.cls_token, self.blocks[0]]
        return [self.blocks[stage]]

    def forward(self, x: Tensor):
        self.check_images(x)
        meter = ComplexityMeter()
        B = x.shape[0]
        in_hw = tuple(x.shape[-2:])
        if min(in_hw) < self.patch_size:
            raise ValueError(f'DeiT: input {in_hw} is smaller than one {self.patch_size}x'
                             f'{self.patch_size} patch')
        x, hw = self.patch_embed(x)
        conv = self.patch_embed.projection
        meter.add('embed', linear_macs(hw[0] * hw[1], conv.in_channels * self.patch_size**2,
                                       conv.out_channels))
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], 1)
        pos = resize_pos_embed(self.pos_embed, self.pos_hw, hw, 1, self.interpolate_mode)
        x = self.pos_drop(x + pos)
        outs = []
        last = len(self.blocks) - 1
        for j, block in enumerate(self.blocks):
            x = self.run_block(block, x, hw, meter, 'layers', f'layer{j + 1}')
            if j == last and self.norm is not None:
                x = self.norm(x)
            if j in self.out_indices:
                outs.append(self._output(x, hw))
        self.last_complexity = meter
        return tuple(outs)

    def _output(self, x, hw):
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        tokens = x[:, 1:]
        if self.out_type == 'avg_featmap':
            return tokens.mean(1)
        B, _, C = tokens.shape
        return tokens.transpose(1, 2).reshape(B, C, hw[0], hw[1]).contiguous()

    def convert_state_dict(self, state_dict):
        from ..converters import detect_and_convert_deit
        return detect_and_convert_deit(state_dict)

    def table_specs(self):
        return [('pos_embed', self.pos_embed, self.pos_hw, 1, self.interpolate_mode)]
