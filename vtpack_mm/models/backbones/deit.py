"""DeiT / ViT with a class token, vanilla or with Dynamic Grained Encoders."""
from typing import Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import ModuleList
from torch import Tensor, nn

from ...dge import ComplexityMeter, linear_macs, norm_macs, split_dge_cfg
from ...registry import MODELS
from ..layers import EncoderLayer
from ..layers.position import resize_pos_embed
from .base import TransformerBackbone, check_arch

DEIT_ARCHS = dict(
    tiny=dict(embed_dims=192, depth=12, num_heads=3, mlp_ratio=4),
    small=dict(embed_dims=384, depth=12, num_heads=6, mlp_ratio=4),
    base=dict(embed_dims=768, depth=12, num_heads=12, mlp_ratio=4),
)
# mmpretrain's names of the DeiT sizes
DEIT_ARCHS.update({f'deit-{k}': DEIT_ARCHS[v] for k, v in
                   dict(t='tiny', tiny='tiny', s='small', small='small', b='base',
                        base='base').items()})
# mmpretrain's ViT presets ('small', 'base', 'large', 'huge' there; 'small' here is DeiT's)
DEIT_ARCHS.update({
    'vit-small': dict(embed_dims=768, depth=8, num_heads=8, feedforward_channels=2304),
    'vit-base': dict(embed_dims=768, depth=12, num_heads=12, feedforward_channels=3072),
    'vit-large': dict(embed_dims=1024, depth=24, num_heads=16, feedforward_channels=4096),
    'vit-huge': dict(embed_dims=1280, depth=32, num_heads=16, feedforward_channels=5120),
})
ARCH_KEYS = ('embed_dims', 'depth', 'num_heads')
OUT_TYPES = ('cls_token', 'featmap', 'avg_featmap', 'raw')


def resolve_arch(arch, name: str) -> dict:
    """A DeiT arch (preset name or dict) with its FFN width as ``feedforward_channels``.

    A dict gives ``embed_dims``, ``depth`` (or mmpretrain's ``num_layers``), ``num_heads``
    and either ``mlp_ratio`` or ``feedforward_channels``.
    """
    if isinstance(arch, dict) and 'depth' not in arch and 'num_layers' in arch:
        arch = {('depth' if k == 'num_layers' else k): v for k, v in arch.items()}
    arch = check_arch(arch, DEIT_ARCHS, ARCH_KEYS, name)
    if 'feedforward_channels' not in arch:
        if 'mlp_ratio' not in arch:
            raise ValueError(f'{name}: custom arch lacks mlp_ratio or feedforward_channels')
        arch['feedforward_channels'] = int(arch['mlp_ratio'] * arch['embed_dims'])
    return arch


def patch_grid(size: Sequence[int], patch_size: int, padding) -> tuple:
    """The patch grid of an image of ``size`` (h, w): 'corner' padding pads the image up to
    whole patches (mmcv's adaptive padding), an int pads every side and then floors."""
    if padding == 'corner':
        return tuple(-(-s // patch_size) for s in size)
    return tuple((s + 2 * int(padding)) // patch_size for s in size)


@MODELS.register_module()
class DeiT(TransformerBackbone):
    """DeiT (`Training data-efficient image transformers
    <https://arxiv.org/abs/2012.12877>`_), optionally with Dynamic Grained Encoders
    (`vtpack <https://github.com/StevenGrove/vtpack>`_, NeurIPS 2021).

    The class token is an extra token: it always stays a query of its own, and attends to
    the dense tokens.

    Args:
        arch: 'tiny', 'small', 'base' (also under mmpretrain's names 'deit-tiny', ...),
            mmpretrain's ViT presets as 'vit-small', 'vit-base', 'vit-large', 'vit-huge',
            or a dict with embed_dims, depth (or num_layers), num_heads and mlp_ratio or
            feedforward_channels. Default 'small'.
        img_size: size the position table is made for. Default 256 (the paper trains at
            256 so that regions divide the 16x16 map evenly).
        patch_size: patch size. Default 16.
        patch_padding: padding of the patch embedding: an int (every side) or 'corner'
            (pad bottom/right up to whole patches, as mmpretrain's ViT). Default 0.
        in_channels: input channels. Default 3.
        out_indices: layers whose output is returned (negative counts from the end).
            Default -1.
        out_type: 'cls_token' (B, C), 'featmap' (B, C, H, W), 'avg_featmap' (B, C) or 'raw'
            (B, 1 + H*W, C). Default 'cls_token'.
        with_cls_token: a class token before the patch tokens. Default True.
        final_norm: LayerNorm on the last layer's output. Default True.
        pre_norm: LayerNorm on the tokens before the first layer (the patch embedding
            then has no bias), as mmpretrain's ``pre_norm`` (CLIP). Default False.
        avg_norm: LayerNorm on the averaged tokens of ``out_type='avg_featmap'``
            (mmpretrain's ``ln2``). Default False.
        interpolate_mode: how the position table is resized to other inputs. Default
            'bicubic' (as mmpretrain).
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate, norm_cfg, act_cfg,
        frozen_stages (layers 0..k and the embeddings; all layers: the final norms
        too), norm_eval, with_cp, dge_cfg
        (``layers`` selects wrapped layers), init_cfg: as in :class:`~vtpack_mm.PVT`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 img_size: Union[int, Sequence[int]] = 256,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'cls_token',
                 with_cls_token: bool = True,
                 final_norm: bool = True,
                 pre_norm: bool = False,
                 avg_norm: bool = False,
                 patch_padding: Union[int, str] = 0,
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
        arch = resolve_arch(arch, name)
        depth, dims = arch['depth'], arch['embed_dims']
        self.check_common(name, out_type, OUT_TYPES, with_cls_token, frozen_stages, depth)
        if avg_norm and out_type != 'avg_featmap':
            raise ValueError(f"{name}: avg_norm needs out_type='avg_featmap', got {out_type!r}")
        valid_padding = patch_padding == 'corner' or \
            isinstance(patch_padding, int) and patch_padding >= 0
        if not valid_padding:
            raise ValueError(f"{name}: patch_padding must be an int >= 0 or 'corner', got "
                             f'{patch_padding!r}')
        self.arch = arch
        self.embed_dims = dims
        self.out_indices = self.check_out_indices(out_indices, depth, name)
        self.out_type = out_type
        self.interpolate_mode = interpolate_mode
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size = tuple(img_size)
        self.patch_size = patch_size
        self.patch_padding = patch_padding
        self.patch_embed = PatchEmbed(in_channels, dims, kernel_size=patch_size,
                                      stride=patch_size, padding=patch_padding,
                                      bias=not pre_norm)
        self.pos_hw = patch_grid(self.img_size, patch_size, patch_padding)
        self.num_extra = int(with_cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims)) if with_cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(
            1, self.num_extra + self.pos_hw[0] * self.pos_hw[1], dims))
        self.pos_drop = nn.Dropout(drop_rate)
        self.pre_norm = build_norm_layer(norm_cfg, dims)[1] if pre_norm else None
        dge_kwargs, selected = split_dge_cfg(dge_cfg, 1, depth)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = ModuleList([
            EncoderLayer(dims, arch['num_heads'], arch['feedforward_channels'],
                         attn_cfg=dict(type='sra', sr_ratio=1), qkv_bias=qkv_bias,
                         drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                         drop_path_rate=dpr[j], act_cfg=act_cfg, norm_cfg=norm_cfg,
                         dge_cfg=dge_kwargs if selected(0, j) else None)
            for j in range(depth)
        ])
        eps = norm_cfg.get('eps', 1e-6)
        self.norm = nn.LayerNorm(dims, eps=eps) if final_norm else None
        self.avg_norm = nn.LayerNorm(dims, eps=eps) if avg_norm else None
        self._freeze_stages()

    def position_tables(self):
        return [self.pos_embed] + ([self.cls_token] if self.cls_token is not None else [])

    def group_strides(self):
        return dict(layers=self.patch_size)

    def frozen_modules(self, stage):
        modules = [self.blocks[stage]]
        if stage == 0:
            modules += [self.patch_embed, self.pos_embed, self.cls_token, self.pre_norm]
        if stage == len(self.blocks) - 1:  # every layer frozen: the norms after them too
            modules += [self.norm, self.avg_norm]
        return [m for m in modules if m is not None]

    def forward(self, x: Tensor):
        self.check_images(x)
        meter = ComplexityMeter()
        B = x.shape[0]
        in_hw = tuple(x.shape[-2:])
        if min(in_hw) < self.patch_size and self.patch_padding == 0:
            raise ValueError(f'DeiT: input {in_hw} is smaller than one {self.patch_size}x'
                             f'{self.patch_size} patch')
        x, hw = self.patch_embed(x)
        conv = self.patch_embed.projection
        meter.add('embed', linear_macs(hw[0] * hw[1], conv.in_channels * self.patch_size**2,
                                       conv.out_channels))
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], 1)
        pos = resize_pos_embed(self.pos_embed, self.pos_hw, hw, self.num_extra,
                               self.interpolate_mode)
        x = self.pos_drop(x + pos)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
            meter.add('embed', norm_macs(x.shape[1], self.embed_dims))
        outs = []
        last = len(self.blocks) - 1
        for j, block in enumerate(self.blocks):
            x = self.run_block(block, x, hw, meter, 'layers', f'layer{j + 1}')
            if j == last and self.norm is not None:
                x = self.norm(x)
            if j in self.out_indices:
                outs.append(self.output(x, hw, self.num_extra, self.out_type, self.avg_norm))
        self.last_complexity = meter
        return tuple(outs)

    def convert_state_dict(self, state_dict):
        from ..converters import detect_and_convert_deit
        return detect_and_convert_deit(state_dict)

    def table_specs(self):
        return [('pos_embed', self.pos_embed, self.pos_hw, self.num_extra,
                 self.interpolate_mode)]
