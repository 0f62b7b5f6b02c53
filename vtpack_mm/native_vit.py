"""mmpretrain's ``VisionTransformer`` config -> ``vtpack_mm.DeiT`` (see :mod:`.native`)."""
from .native_table import FALLBACK_VIT_ARCHS, _init_cfg, _native_class, _refuse

ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')
# layer_cfgs entries we honour when every layer has the same value
LAYER_KEYS = ('act_cfg', 'attn_drop_rate')
# layer_cfgs entries that must keep the value mmpretrain's encoder layer has by default
LAYER_DEFAULTS = dict(num_fcs=2, ffn_type='origin', init_cfg=None)


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _arch(key: str, arch) -> dict:
    """mmpretrain's arch (a preset name or a dict) as our explicit arch dict."""
    if isinstance(arch, str):
        cls = _native_class(key)
        zoo = getattr(cls, 'arch_zoo', None) or FALLBACK_VIT_ARCHS
        if arch.lower() not in zoo:
            _refuse(key, 'arch', arch, f'not one of the presets {sorted(zoo)}')
        arch = zoo[arch.lower()]
    if not isinstance(arch, dict) or set(ARCH_KEYS) - set(arch):
        _refuse(key, 'arch', arch, f'a custom arch is a dict with keys {list(ARCH_KEYS)}')
    extra = sorted(set(arch) - set(ARCH_KEYS))
    if extra:
        _refuse(key, 'arch', arch, f'keys {extra} are not part of a ViT arch')
    return dict(embed_dims=arch['embed_dims'], depth=arch['num_layers'],
                num_heads=arch['num_heads'], feedforward_channels=arch['feedforward_channels'])


def _layer_settings(key: str, layer_cfgs, num_layers: int) -> dict:
    """act_cfg / attn_drop_rate from ``layer_cfgs`` (one dict, or one per layer, the same
    in every layer); anything else there is refused by name."""
    cfgs = [layer_cfgs] * num_layers if isinstance(layer_cfgs, dict) else list(layer_cfgs)
    if len(cfgs) != num_layers or not all(isinstance(c, dict) for c in cfgs):
        _refuse(key, 'layer_cfgs', layer_cfgs, f'a dict or {num_layers} dicts (one per layer)')
    settings = dict(act_cfg=dict(type='GELU'), attn_drop_rate=0.)
    for name in sorted({k for c in cfgs for k in c}):
        values = [c.get(name, LAYER_DEFAULTS.get(name, settings.get(name))) for c in cfgs]
        if name in LAYER_DEFAULTS:
            bad = [v for v in values if v != LAYER_DEFAULTS[name]]
            if bad:
                _refuse(key, f"layer_cfgs['{name}']", bad[0], f'vtpack_mm.DeiT has '
                        f'{name}={LAYER_DEFAULTS[name]!r} only')
        elif name in LAYER_KEYS:
            if any(v != values[0] for v in values):
                _refuse(key, f"layer_cfgs['{name}']", values, 'vtpack_mm.DeiT has one value '
                        'for every layer')
            settings[name] = values[0]
        else:
            _refuse(key, f"layer_cfgs['{name}']", values[0], 'vtpack_mm.DeiT sets it from its '
                    f'own arguments; it honours {list(LAYER_KEYS)} (the same in every layer)')
    return settings


def _patch_padding(key: str, args: dict, dims: int, patch: int):
    """The patch embedding's padding; every other ``patch_cfg`` entry must keep the value
    VisionTransformer gives it itself."""
    own = dict(in_channels=args['in_channels'], input_size=_pair(args['img_size']),
               embed_dims=dims, conv_type='Conv2d', kernel_size=(patch, patch),
               stride=(patch, patch), bias=not args['pre_norm'], dilation=(1, 1),
               norm_cfg=None, init_cfg=None)
    padding = 'corner'  # mmcv's PatchEmbed default: pad up to whole patches
    for name, value in args['patch_cfg'].items():
        if name == 'padding':
            if value != 'corner' and not (isinstance(value, int) and value >= 0):
                _refuse(key, "patch_cfg['padding']", value, "'corner' or an int only")
            padding = value
            continue
        if name not in own:
            _refuse(key, f"patch_cfg['{name}']", value, f'vtpack_mm.DeiT honours padding and '
                    f'the values VisionTransformer sets itself ({sorted(own)})')
        mine = own[name]
        if (_pair(value) if isinstance(mine, tuple) else value) != mine:
            _refuse(key, f"patch_cfg['{name}']", value, f'vtpack_mm.DeiT has {mine!r} there')
    return padding


def _frozen_stages(key: str, value, num_layers: int) -> int:
    """mmpretrain freezes the embeddings and layers 1..k when k > 0 (and the final norm at
    k = num_layers); ours freezes the embeddings and layers 0..k (and the final norms when
    k is the last layer)."""
    if not isinstance(value, int) or not -1 <= value <= num_layers:
        _refuse(key, 'frozen_stages', value, f'an int in [-1, {num_layers}]')
    return value - 1 if value > 0 else -1


def translate_vit(key: str, args: dict) -> dict:
    """mmpretrain ``VisionTransformer`` arguments (defaults filled in) -> vtpack_mm.DeiT."""
    arch = _arch(key, args['arch'])
    dims = arch['embed_dims']
    patch = _pair(args['patch_size'])
    if patch[0] != patch[1]:
        _refuse(key, 'patch_size', args['patch_size'], 'vtpack_mm.DeiT has square patches')
    patch = patch[0]
    if args['layer_scale_init_value']:
        _refuse(key, 'layer_scale_init_value', args['layer_scale_init_value'],
                "vtpack_mm.DeiT's layers have no layer scale (0 only)")
    for name in ('beit_style', 'use_abs_pos_emb', 'use_rel_pos_bias'):  # in other versions
        if args.get(name):
            _refuse(key, name, args[name], 'vtpack_mm.DeiT has none of it')
    norm_cfg = dict(args['norm_cfg'])
    if norm_cfg.get('type') != 'LN':
        _refuse(key, 'norm_cfg', args['norm_cfg'], "vtpack_mm.DeiT has LayerNorms ('LN') only")
    norm_cfg.setdefault('eps', 1e-5)  # nn.LayerNorm's default, which mmpretrain's LN keeps
    layers = _layer_settings(key, args['layer_cfgs'], arch['depth'])
    img_size = args['img_size']
    return dict(
        type='vtpack_mm.DeiT', arch=arch,
        img_size=list(img_size) if isinstance(img_size, (list, tuple)) else img_size,
        patch_size=patch, patch_padding=_patch_padding(key, args, dims, patch),
        in_channels=args['in_channels'], out_indices=args['out_indices'],
        out_type=args['out_type'], with_cls_token=args['with_cls_token'],
        final_norm=args['final_norm'], pre_norm=bool(args['pre_norm']),
        avg_norm=args['out_type'] == 'avg_featmap', interpolate_mode=args['interpolate_mode'],
        qkv_bias=args['qkv_bias'], drop_rate=args['drop_rate'],
        attn_drop_rate=layers['attn_drop_rate'], drop_path_rate=args['drop_path_rate'],
        norm_cfg=norm_cfg, act_cfg=layers['act_cfg'],
        frozen_stages=_frozen_stages(key, args['frozen_stages'], arch['depth']),
        init_cfg=_init_cfg(key, args))
