"""A native mmdet / mmseg / mmpretrain backbone config turned into a vtpack_mm one.

:func:`translate_backbone` maps the config of one of these native backbones onto the
vtpack_mm backbone that computes the same function with the same weights:

==================================================  ======================
native type                                         vtpack_mm type
==================================================  ======================
``mmdet.PyramidVisionTransformer`` (PVT v1)         ``vtpack_mm.PVT``
``mmdet.PyramidVisionTransformerV2``                ``vtpack_mm.PVTv2``
``mmseg.MixVisionTransformer`` (SegFormer's MiT)    ``vtpack_mm.MiT``
``mmpretrain.VisionTransformer`` (ViT, DeiT)        ``vtpack_mm.DeiT``
==================================================  ======================

Arguments the config leaves out take the native class's defaults (read from its signature
when the framework is importable, else from the tables of :mod:`vtpack_mm.native_table`),
so the result spells out every setting. An argument that changes the function in a way the vtpack_mm
backbone cannot reproduce, and an argument the native class does not have, is refused with
a ``ValueError`` that names it. The checkpoints of the native backbones load as they are:
each vtpack_mm backbone converts their key layout on load.

:func:`translate_model_config` does it for a whole config (``model.backbone``), so that a
user's own config trains with tools/train.py or goes to tools/retrofit.py.
"""
import copy
from typing import Optional

from .native_table import FRAMEWORKS, NATIVE, OURS, REFUSED, _init_cfg, _refuse, native_defaults


def supported_types() -> str:
    """The supported native types and ours, for error messages."""
    return (f"native: {', '.join(NATIVE)}; vtpack_mm's own: "
            f"{', '.join('vtpack_mm.' + t for t in OURS)}")


def _split_type(type_):
    """(scope prefix or None, class name) of a config's ``type``."""
    if not isinstance(type_, str):  # a class object (lazy config)
        return (getattr(type_, '__module__', '') or '').split('.')[0] or None, \
            getattr(type_, '__name__', repr(type_))
    prefix, _, name = type_.rpartition('.')
    return prefix or None, name


def _resolve(type_, scope: Optional[str]) -> str:
    """'ours' or the NATIVE key of a backbone type; a ValueError for anything else."""
    prefix, name = _split_type(type_)
    if name in OURS and prefix in (None, 'vtpack_mm'):
        return 'ours'
    framework = prefix or scope
    if framework not in FRAMEWORKS:  # no framework known: the one that has this type
        owners = [k for k in list(NATIVE) + list(REFUSED) if k.split('.', 1)[1] == name]
        framework = owners[0].split('.')[0] if len(owners) == 1 else framework
    key = f'{framework}.{name}'
    if key in REFUSED:
        raise ValueError(f'backbone type {key} is not supported: {REFUSED[key]}')
    if key not in NATIVE:
        where = f' in scope {framework!r}' if framework and not prefix else ''
        raise ValueError(f'backbone type {type_!r}{where} has no vtpack_mm translation; '
                         f'supported types are {supported_types()}')
    return key


def _arguments(key: str, cfg: dict) -> dict:
    """The native config's arguments over the native defaults; unknown ones refused."""
    defaults = native_defaults(key)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f'{key} has no argument(s) {unknown}; it takes {sorted(defaults)}')
    return {**defaults, **copy.deepcopy(cfg)}


def _stage_lists(key: str, args: dict, names) -> dict:
    """The per-stage arguments ``names`` as lists of ``num_stages`` entries."""
    n = args['num_stages']
    out = {}
    for name in names:
        value = args[name]
        if not isinstance(value, (list, tuple)) or len(value) != n:
            _refuse(key, name, value, f'it needs one entry per stage (num_stages={n})')
        out[name] = list(value)
    return out


def _stage_indices(key: str, value, n: int):
    """Native pyramids return stage i when ``i in out_indices``: non-negative indices."""
    indices = [value] if isinstance(value, int) else list(value)
    if not indices or any(not isinstance(i, int) or not 0 <= i < n for i in indices):
        _refuse(key, 'out_indices', value, f'the native backbone returns stages 0..{n - 1} '
                'named by non-negative indices')
    return tuple(indices)


def _require(key: str, args: dict, name: str, value, why: str):
    if args[name] != value:
        _refuse(key, name, args[name], why)


def _pyramid(key: str, args: dict, lists: dict) -> dict:
    """What PVT v1, PVTv2 and MiT share: arch, rates, norms, outputs and weights."""
    embed = args['embed_dims']
    if not isinstance(embed, int):
        _refuse(key, 'embed_dims', embed, 'it is the base width (an int), multiplied by '
                'num_heads[i] in stage i')
    return dict(
        arch=dict(depths=lists['num_layers'], embed_dims=[embed * h for h in lists['num_heads']],
                  num_heads=lists['num_heads'], mlp_ratios=lists['mlp_ratios'],
                  sr_ratios=lists['sr_ratios']),
        in_channels=args['in_channels'],
        out_indices=_stage_indices(key, args['out_indices'], args['num_stages']),
        qkv_bias=args['qkv_bias'], drop_rate=args['drop_rate'],
        attn_drop_rate=args['attn_drop_rate'], drop_path_rate=args['drop_path_rate'],
        norm_cfg=args['norm_cfg'], act_cfg=args['act_cfg'], init_cfg=_init_cfg(key, args))


def _mmdet_pvt(key: str, args: dict) -> dict:
    lists = _stage_lists(key, args, ('num_layers', 'num_heads', 'patch_sizes', 'strides',
                                     'paddings', 'sr_ratios', 'mlp_ratios'))
    if lists['strides'] != lists['patch_sizes']:
        _refuse(key, 'strides', args['strides'], f"vtpack_mm.PVT's patch embeddings have "
                f"stride = kernel (patch_sizes={lists['patch_sizes']})")
    if any(lists['paddings']):
        _refuse(key, 'paddings', args['paddings'], "vtpack_mm.PVT's patch embeddings have no "
                'padding')
    _require(key, args, 'use_abs_pos_embed', True, 'PVT v1 has position tables')
    _require(key, args, 'norm_after_stage', False, 'vtpack_mm.PVT has no norm after each '
             'stage (PyramidVisionTransformerV2 -> vtpack_mm.PVTv2 has)')
    _require(key, args, 'use_conv_ffn', False, 'vtpack_mm.PVT has a plain FFN '
             '(PyramidVisionTransformerV2 -> vtpack_mm.PVTv2 has the convolutional one)')
    size = args['pretrain_img_size']
    size = tuple(size) * (2 if len(size) == 1 else 1) if isinstance(size, (list, tuple)) \
        else size
    return dict(type='vtpack_mm.PVT', pretrain_img_size=size, patch_sizes=lists['patch_sizes'],
                **_pyramid(key, args, lists))


def _mmdet_pvtv2(key: str, args: dict) -> dict:
    lists = _stage_lists(key, args, ('num_layers', 'num_heads', 'patch_sizes', 'strides',
                                     'paddings', 'sr_ratios', 'mlp_ratios'))
    _require(key, args, 'use_abs_pos_embed', False, 'PVTv2 has no position tables')
    _require(key, args, 'norm_after_stage', True, 'PVTv2 has a norm after every stage')
    _require(key, args, 'use_conv_ffn', True, "PVTv2's FFN has the depth-wise convolution")
    # pretrain_img_size only sizes position tables, which PVTv2 has none of
    return dict(type='vtpack_mm.PVTv2', patch_sizes=lists['patch_sizes'],
                strides=lists['strides'], paddings=lists['paddings'],
                **_pyramid(key, args, lists))


def _mmseg_mit(key: str, args: dict) -> dict:
    lists = _stage_lists(key, args, ('num_layers', 'num_heads', 'patch_sizes', 'strides',
                                     'sr_ratios'))
    lists['mlp_ratios'] = [args['mlp_ratio']] * args['num_stages']
    return dict(type='vtpack_mm.MiT', patch_sizes=lists['patch_sizes'], strides=lists['strides'],
                paddings=[k // 2 for k in lists['patch_sizes']], with_cp=args['with_cp'],
                **_pyramid(key, args, lists))


TRANSLATORS = {
    'mmdet.PyramidVisionTransformer': _mmdet_pvt,
    'mmdet.PyramidVisionTransformerV2': _mmdet_pvtv2,
    'mmseg.MixVisionTransformer': _mmseg_mit,
}


def translate_backbone(cfg: dict, dge_cfg: Optional[dict] = None,
                       scope: Optional[str] = None) -> dict:
    """The vtpack_mm backbone config of the same function as the native ``cfg``.

    Args:
        cfg: a backbone config: one of the native types above, with or without its scope
            prefix ('mmdet.', 'mmseg.', 'mmpretrain.'), or one of vtpack_mm's own (passed
            through as it is).
        dge_cfg: if given, set as the result's ``dge_cfg`` (the DGE version).
        scope: the config's ``default_scope``, which names the framework of a type given
            without prefix (mmseg's own ``VisionTransformer`` is not mmpretrain's).

    Returns:
        A new dict; ``_delete_`` is kept when ``cfg`` has it.

    Raises:
        ValueError: for an unsupported type (the message lists the supported ones), an
            argument the native class does not have, or a value vtpack_mm cannot honour;
            each names the argument.
    """
    from .native_vit import translate_vit
    src = cfg.to_dict() if hasattr(cfg, 'to_dict') else copy.deepcopy(dict(cfg))
    delete = src.pop('_delete_', None)
    if 'type' not in src:
        raise ValueError(f'the backbone config has no type (keys: {sorted(src)}); supported '
                         f'types are {supported_types()}')
    type_ = src.pop('type')
    key = _resolve(type_, scope)
    if key == 'ours':
        out = dict(src, type=type_)
    else:
        args = _arguments(key, src)
        translate = translate_vit if key == 'mmpretrain.VisionTransformer' \
            else TRANSLATORS[key]
        out = translate(key, args)
    if dge_cfg is not None:
        out['dge_cfg'] = copy.deepcopy(dict(dge_cfg))
    if delete is not None:
        out['_delete_'] = delete
    return out


SEGMENTORS = ('EncoderDecoder', 'CascadeEncoderDecoder')
BUDGET_HOOK = 'BudgetLossHook'


def translate_model_config(cfg, dge_cfg: Optional[dict] = None, budget: Optional[float] = None,
                           budget_weight: float = 1.0):
    """A copy of the mmengine Config ``cfg`` with ``model.backbone`` translated
    (:func:`translate_backbone`) and vtpack_mm in ``custom_imports``; the rest is kept.

    An mmseg segmentor's ``model.pretrained`` (which mmseg hands to a native backbone)
    becomes the translated backbone's ``init_cfg``. With ``budget``, a
    ``vtpack_mm.BudgetLossHook`` with that target and ``budget_weight`` replaces any in
    ``custom_hooks`` (the backbone needs a ``dge_cfg``: given here or already in the
    config).
    """
    cfg = copy.deepcopy(cfg)
    model = cfg.get('model')
    if not model or not model.get('backbone'):
        raise ValueError('the config has no model.backbone to translate')
    type_ = model.backbone.get('type')
    native = type_ is not None and _resolve(type_, cfg.get('default_scope')) != 'ours'
    if native and str(model.get('type', '')).split('.')[-1] in SEGMENTORS and \
            model.get('pretrained') is not None:
        backbone = model.backbone
        if backbone.get('pretrained') is not None:
            raise ValueError('both model.pretrained and model.backbone.pretrained are set '
                             '(mmseg refuses that too)')
        backbone.pretrained = model.pretrained
        model.pretrained = None
    model.backbone = translate_backbone(model.backbone, dge_cfg, scope=cfg.get('default_scope'))
    imports = cfg.get('custom_imports') or dict(imports=[], allow_failed_imports=False)
    names = imports.get('imports', [])
    names = [names] if isinstance(names, str) else list(names)
    if 'vtpack_mm' not in names:
        imports['imports'] = names + ['vtpack_mm']
    cfg.custom_imports = imports
    if budget is not None:
        if not model.backbone.get('dge_cfg'):
            raise ValueError(f'budget={budget} needs a DGE backbone: give dge_cfg')
        hooks = [h for h in cfg.get('custom_hooks', None) or []
                 if str(h.get('type', '')).split('.')[-1] != BUDGET_HOOK]
        cfg.custom_hooks = hooks + [dict(type=f'vtpack_mm.{BUDGET_HOOK}', budget=budget,
                                         loss_weight=budget_weight)]
    return cfg
