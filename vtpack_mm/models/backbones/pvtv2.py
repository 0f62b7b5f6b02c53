"""PVTv2 and SegFormer's MiT: one pyramid of overlapping patch embeddings, spatial-reduction
attention and Mix-FFNs, vanilla or with Dynamic Grained Encoders."""
from typing import Optional, Sequence, Union

from ...registry import MODELS
from .pvt import PVT


def _archs(mlp_ratios, b5_mlp_ratios=None):
    table = dict(b0=(32, [2, 2, 2, 2]), b1=(64, [2, 2, 2, 2]), b2=(64, [3, 4, 6, 3]),
                 b3=(64, [3, 4, 18, 3]), b4=(64, [3, 8, 27, 3]), b5=(64, [3, 6, 40, 3]))
    heads = [1, 2, 5, 8]
    return {
        name: dict(depths=depths, embed_dims=[base * h for h in heads], num_heads=heads,
                   mlp_ratios=list(b5_mlp_ratios if name == 'b5' and b5_mlp_ratios
                                   else mlp_ratios),
                   sr_ratios=[8, 4, 2, 1])
        for name, (base, depths) in table.items()
    }


# mmdet's PVTv2 configs (the official pvt_v2_b*): MLP ratios 8-8-4-4, b5 4-4-4-4
PVTV2_ARCHS = _archs([8, 8, 4, 4], [4, 4, 4, 4])
# mmseg's SegFormer configs: MLP ratio 4 in every stage
MIT_ARCHS = _archs([4, 4, 4, 4])


@MODELS.register_module()
class PVTv2(PVT):
    """PVTv2, optionally with Dynamic Grained Encoders.

    `PVT v2: Improved Baselines with Pyramid Vision Transformer
    <https://arxiv.org/abs/2106.13797>`_ with the sparse-query encoders of `Dynamic Grained
    Encoder for Vision Transformers <https://github.com/StevenGrove/vtpack>`_ (NeurIPS
    2021). The same network as mmdet's ``PyramidVisionTransformerV2``: overlapping patch
    embeddings (strided convolutions, kernel 7 then 3), no position tables, spatial-reduction
    attention, Mix-FFNs (:class:`~vtpack_mm.models.layers.MixFFN`: the 3x3 depth-wise
    convolution is the positional signal) and a norm after every stage. With ``dge_cfg``
    the patch embeddings and stage norms stay dense; the attention runs the routed queries
    against the dense reduced keys/values, and the Mix-FFN's convolution reads the hidden
    queries spread on the map.

    Args:
        arch: 'b0'...'b5' or a dict with depths, embed_dims, num_heads, mlp_ratios and
            sr_ratios (one entry per stage). Default 'b0'.
        in_channels: input channels. Default 3.
        patch_sizes: patch-embedding kernels. Default (7, 3, 3, 3).
        strides: patch-embedding strides. Default (4, 2, 2, 2).
        paddings: patch-embedding paddings; None = half the kernel. Default None.
        out_indices: stages whose (B, C, H, W) map is returned. Default (0, 1, 2, 3).
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate (default 0.1), norm_cfg,
        act_cfg, frozen_stages, norm_eval, with_cp, dge_cfg, init_cfg: as in
            :class:`~vtpack_mm.PVT`. Checkpoints of mmdet's PVTv2, mmseg's MiT, the official
            PVTv2 and SegFormer releases convert on load.
    """
    arch_zoo = PVTV2_ARCHS
    abs_pos_embed = False
    norm_after_stage = True
    ffn_type = 'mix'
    overlap_patches = True
    default_drop_path_rate = 0.1

    def __init__(self,
                 arch: Union[str, dict] = 'b0',
                 in_channels: int = 3,
                 patch_sizes: Sequence[int] = (7, 3, 3, 3),
                 strides: Sequence[int] = (4, 2, 2, 2),
                 paddings: Optional[Sequence[int]] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: Optional[float] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 dge_cfg: Optional[dict] = None,
                 init_cfg=None):
        if drop_path_rate is None:
            drop_path_rate = self.default_drop_path_rate
        super().__init__(
            arch=arch, in_channels=in_channels, patch_sizes=patch_sizes, strides=strides,
            paddings=paddings, out_indices=out_indices, qkv_bias=qkv_bias,
            drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg, act_cfg=act_cfg, frozen_stages=frozen_stages,
            norm_eval=norm_eval, with_cp=with_cp, dge_cfg=dge_cfg, init_cfg=init_cfg)

    def convert_state_dict(self, state_dict):
        from ..converters import detect_and_convert_pvtv2
        return detect_and_convert_pvtv2(state_dict)


@MODELS.register_module()
class MiT(PVTv2):
    """SegFormer's Mix Transformer encoder (MiT-B0...B5), optionally with Dynamic Grained
    Encoders.

    `SegFormer <https://arxiv.org/abs/2105.15203>`_'s backbone is PVTv2's network with an
    MLP ratio of 4 in every stage: this is :class:`PVTv2` with mmseg's
    ``MixVisionTransformer`` presets (arch 'b0'...'b5'). Same arguments as
    :class:`PVTv2`, whose outputs and checkpoints (mmseg's, the SegFormer release's)
    it shares.
    """
    arch_zoo = MIT_ARCHS
