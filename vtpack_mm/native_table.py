"""The native backbones vtpack_mm translates (:mod:`vtpack_mm.native`): their types, the
defaults of their arguments, and what every translation shares."""
import copy
import importlib
import inspect

OURS = ('PVT', 'DPVT', 'DeiT', 'PVTv2', 'MiT')
FRAMEWORKS = ('mmdet', 'mmseg', 'mmpretrain')
NATIVE = {  # scope.type -> (module, class) holding its signature
    'mmdet.PyramidVisionTransformer': ('mmdet.models.backbones.pvt', 'PyramidVisionTransformer'),
    'mmdet.PyramidVisionTransformerV2': ('mmdet.models.backbones.pvt',
                                         'PyramidVisionTransformerV2'),
    'mmseg.MixVisionTransformer': ('mmseg.models.backbones.mit', 'MixVisionTransformer'),
    'mmpretrain.VisionTransformer': ('mmpretrain.models.backbones.vision_transformer',
                                     'VisionTransformer'),
}
REFUSED = {
    'mmpretrain.DistilledVisionTransformer':
        'DeiT with a distillation token; vtpack_mm.DeiT has none (use VisionTransformer with '
        "arch='deit-tiny'/'deit-small'/'deit-base' and the non-distilled weights)",
}

_PVT1 = dict(pretrain_img_size=224, in_channels=3, embed_dims=64, num_stages=4,
             num_layers=[3, 4, 6, 3], num_heads=[1, 2, 5, 8], patch_sizes=[4, 2, 2, 2],
             strides=[4, 2, 2, 2], paddings=[0, 0, 0, 0], sr_ratios=[8, 4, 2, 1],
             out_indices=(0, 1, 2, 3), mlp_ratios=[8, 8, 4, 4], qkv_bias=True, drop_rate=0.,
             attn_drop_rate=0., drop_path_rate=0.1, use_abs_pos_embed=True,
             norm_after_stage=False, use_conv_ffn=False, act_cfg=dict(type='GELU'),
             norm_cfg=dict(type='LN', eps=1e-6), pretrained=None, convert_weights=True,
             init_cfg=None)
# what mmdet's PyramidVisionTransformerV2 passes to PyramidVisionTransformer itself
PVTV2_FIXED = dict(patch_sizes=[7, 3, 3, 3], paddings=[3, 1, 1, 1], use_abs_pos_embed=False,
                   norm_after_stage=True, use_conv_ffn=True)
# the native signatures of mmdet 3.3, mmseg 1.2.2 and mmpretrain 1.2.0, used when the
# framework is not installed
FALLBACK_DEFAULTS = {
    'mmdet.PyramidVisionTransformer': _PVT1,
    'mmdet.PyramidVisionTransformerV2': dict(_PVT1, **PVTV2_FIXED),
    'mmseg.MixVisionTransformer': dict(
        in_channels=3, embed_dims=64, num_stages=4, num_layers=[3, 4, 6, 3],
        num_heads=[1, 2, 4, 8], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
        sr_ratios=[8, 4, 2, 1], out_indices=(0, 1, 2, 3), mlp_ratio=4, qkv_bias=True,
        drop_rate=0., attn_drop_rate=0., drop_path_rate=0., act_cfg=dict(type='GELU'),
        norm_cfg=dict(type='LN', eps=1e-6), pretrained=None, init_cfg=None, with_cp=False),
    'mmpretrain.VisionTransformer': dict(
        arch='base', img_size=224, patch_size=16, in_channels=3, out_indices=-1, drop_rate=0.,
        drop_path_rate=0., qkv_bias=True, norm_cfg=dict(type='LN', eps=1e-6), final_norm=True,
        out_type='cls_token', with_cls_token=True, frozen_stages=-1,
        interpolate_mode='bicubic', layer_scale_init_value=0., patch_cfg=dict(),
        layer_cfgs=dict(), pre_norm=False, init_cfg=None),
}


def _vit(dims, layers, heads, ffn):
    return dict(embed_dims=dims, num_layers=layers, num_heads=heads, feedforward_channels=ffn)


# mmpretrain's ViT presets (VisionTransformer.arch_zoo), used when it is not installed
FALLBACK_VIT_ARCHS = {
    **dict.fromkeys(['s', 'small'], _vit(768, 8, 8, 2304)),
    **dict.fromkeys(['b', 'base'], _vit(768, 12, 12, 3072)),
    **dict.fromkeys(['l', 'large'], _vit(1024, 24, 16, 4096)),
    **dict.fromkeys(['h', 'huge'], _vit(1280, 32, 16, 5120)),
    **dict.fromkeys(['eva-g', 'eva-giant'], _vit(1408, 40, 16, 6144)),
    **dict.fromkeys(['deit-t', 'deit-tiny'], _vit(192, 12, 3, 768)),
    **dict.fromkeys(['deit-s', 'deit-small', 'dinov2-s', 'dinov2-small'], _vit(384, 12, 6, 1536)),
    **dict.fromkeys(['deit-b', 'deit-base'], _vit(768, 12, 12, 3072)),
    **dict.fromkeys(['dinov2-g', 'dinov2-giant'], _vit(1536, 40, 24, 6144)),
}


def _native_class(key: str):
    module, name = NATIVE[key]
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # not installed, or not importable beside this mmcv: the table
        return None


def native_defaults(key: str) -> dict:
    """Every argument of the native backbone ``key`` ('mmdet.PyramidVisionTransformer', ...)
    with its default: from the installed class's signature, else :data:`FALLBACK_DEFAULTS`."""
    cls = _native_class(key)
    if cls is None:
        return copy.deepcopy(FALLBACK_DEFAULTS[key])
    defaults = {}
    for klass in cls.__mro__:  # a class taking **kwargs passes them on to its base
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                defaults.setdefault(p.name, copy.deepcopy(p.default))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    if key == 'mmdet.PyramidVisionTransformerV2':
        defaults.update(copy.deepcopy(PVTV2_FIXED))
    return defaults


def _refuse(key, arg, value, why):
    raise ValueError(f'{key}: {arg}={value!r} is not supported: {why}')


def _init_cfg(key: str, args: dict):
    """``pretrained`` (a path) or ``init_cfg`` as our init_cfg; a checkpoint dict without a
    type (mmdet's PVT configs) is a ``Pretrained`` one."""
    pretrained, init_cfg = args.get('pretrained'), args.get('init_cfg')
    if pretrained is not None:
        if init_cfg:
            _refuse(key, 'pretrained', pretrained, 'init_cfg is set too (the native class '
                    'refuses both)')
        if not isinstance(pretrained, str):
            _refuse(key, 'pretrained', pretrained, 'it must be a checkpoint path or None')
        return dict(type='Pretrained', checkpoint=pretrained)
    if isinstance(init_cfg, dict) and 'type' not in init_cfg and 'checkpoint' in init_cfg:
        return dict(init_cfg, type='Pretrained')
    return init_cfg
