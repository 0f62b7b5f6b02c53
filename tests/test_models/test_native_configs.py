"""A user's own native backbone config in, our backbone out (vtpack_mm.native).

Each supported native backbone is built with random weights, its config translated and our
backbone built from the translation; with the native weights loaded (load_state_dict, and
init_cfg=Pretrained from a file, bare or a whole detector's) both compute the same outputs.
The comparisons run in float64, so 1e-5 is far above rounding and far below any real
difference. Arguments we cannot honour are refused by name.
"""
import pytest
import torch
from layouts import randomize
from mmdet.models.backbones.pvt import PyramidVisionTransformer
from mmengine.config import Config
from mmpretrain.models.backbones.vision_transformer import VisionTransformer

import vtpack_mm
from vtpack_mm.dge import dge_encoders
from vtpack_mm.native import translate_backbone, translate_model_config
from vtpack_mm.native_table import FALLBACK_DEFAULTS, FALLBACK_VIT_ARCHS, NATIVE, native_defaults

PVT_KW = dict(num_layers=[2, 2, 2, 2], pretrain_img_size=64)  # PVT-tiny, 64 px tables
VIT_ARCH = dict(embed_dims=64, num_layers=3, num_heads=4, feedforward_channels=96)


def build_ours(native_cfg, **kwargs):
    return vtpack_mm.MODELS.build(translate_backbone(native_cfg, **kwargs))


def assert_same_outputs(native, ours, size):
    for model in (native, ours):  # (mmpretrain's train() returns None: no chaining)
        model.double()
        model.eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = native(x), ours(x)
    assert len(expected) == len(got) > 0
    for e, g in zip(expected, got):
        assert e.std() > 0.1  # a real signal, not a constant
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


# --- mmdet PyramidVisionTransformer (v1) -> vtpack_mm.PVT ---------------------------------
@pytest.mark.parametrize('size', [(64, 64), (96, 64)])
def test_mmdet_pvt_same_function_with_its_weights(size):
    native = randomize(PyramidVisionTransformer(**PVT_KW))
    ours = build_ours(dict(type='mmdet.PyramidVisionTransformer', **PVT_KW))
    assert type(ours) is vtpack_mm.PVT and ours.arch['embed_dims'] == [64, 128, 320, 512]
    ours.load_state_dict(native.state_dict(), strict=True)
    assert_same_outputs(native, ours, size)


def test_mmdet_pvt_loads_through_init_cfg_bare_and_whole_detector(tmp_path):
    native = randomize(PyramidVisionTransformer(**PVT_KW, out_indices=(1, 3)))
    bare, whole = str(tmp_path / 'backbone.pth'), str(tmp_path / 'retinanet.pth')
    torch.save(native.state_dict(), bare)
    state = {f'backbone.{k}': v for k, v in native.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 4, 1, 1)
    torch.save(dict(state_dict=state, meta={}), whole)
    # mmdet's PVT configs give init_cfg=dict(checkpoint=...) without a type
    for init in (dict(init_cfg=dict(checkpoint=bare)), dict(pretrained=whole)):
        cfg = dict(type='PyramidVisionTransformer', out_indices=(1, 3), **PVT_KW, **init)
        translated = translate_backbone(cfg)
        assert translated['init_cfg']['type'] == 'Pretrained'
        ours = vtpack_mm.MODELS.build(translated)
        ours.init_weights()
        assert_same_outputs(native, ours, (64, 64))


# --- mmpretrain VisionTransformer -> vtpack_mm.DeiT -----------------------------------------
VIT_CASES = {
    'p16-224': (dict(patch_size=16), (224, 224)),
    'p32-224-featmap-no-cls': (dict(patch_size=32, with_cls_token=False, out_type='featmap',
                                    final_norm=False, out_indices=[0, 2]), (224, 224)),
    'p14-224-raw': (dict(patch_size=14, out_type='raw', out_indices=[-1, 1]), (224, 224)),
    'p16-100-corner-padding-avg': (dict(img_size=100, patch_size=16, out_type='avg_featmap'),
                                   (100, 100)),
    'p16-64-resized-bilinear': (dict(img_size=64, interpolate_mode='bilinear',
                                     out_type='featmap'), (96, 80)),
    'pre-norm-relu-qkv-bias-off': (dict(patch_size=32, pre_norm=True, qkv_bias=False,
                                        layer_cfgs=dict(act_cfg=dict(type='ReLU')),
                                        norm_cfg=dict(type='LN')), (128, 128)),
}


@pytest.mark.parametrize('kwargs, size', VIT_CASES.values(), ids=list(VIT_CASES))
def test_mmpretrain_vit_same_function_with_its_weights(kwargs, size):
    native = randomize(VisionTransformer(arch=dict(VIT_ARCH), **kwargs))
    ours = build_ours(dict(type='mmpretrain.VisionTransformer', arch=dict(VIT_ARCH), **kwargs))
    assert type(ours) is vtpack_mm.DeiT
    ours.load_state_dict(native.state_dict(), strict=True)
    assert_same_outputs(native, ours, size)


def test_mmpretrain_vit_preset_and_whole_classifier_checkpoint(tmp_path):
    native = randomize(VisionTransformer(arch='deit-tiny', drop_path_rate=0.1))
    path = str(tmp_path / 'deit-tiny.pth')
    state = {f'backbone.{k}': v for k, v in native.state_dict().items()}
    state.update({'head.layers.head.weight': torch.zeros(10, 192),
                  'head.layers.head.bias': torch.zeros(10)})
    torch.save(dict(state_dict=state), path)
    cfg = dict(type='VisionTransformer', arch='deit-tiny', drop_path_rate=0.1,
               init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone'))
    ours = build_ours(cfg)
    assert ours.arch == dict(embed_dims=192, depth=12, num_heads=3, feedforward_channels=768)
    ours.init_weights()
    assert_same_outputs(native, ours, (224, 224))


@pytest.mark.parametrize('arch', ['deit-tiny', 'deit-s', 'deit-base', 'small', 'base', 'large',
                                  'huge'])
def test_mmpretrain_vit_presets_become_explicit_archs(arch):
    zoo = VisionTransformer.arch_zoo[arch]
    got = translate_backbone(dict(type='VisionTransformer', arch=arch.upper()))['arch']
    assert got == dict(embed_dims=zoo['embed_dims'], depth=zoo['num_layers'],
                       num_heads=zoo['num_heads'],
                       feedforward_channels=zoo['feedforward_channels'])
    # our own presets under mmpretrain's names ('small' is DeiT-S here, so 'vit-small')
    ours = dict(vtpack_mm.models.backbones.deit.DEIT_ARCHS)
    name = arch if arch.startswith('deit') else f'vit-{arch}'
    assert {k: ours[name].get(k) for k in ('embed_dims', 'depth', 'num_heads')} == \
        {k: got[k] for k in ('embed_dims', 'depth', 'num_heads')}


@pytest.mark.parametrize('frozen', [-1, 0, 1, 3])
def test_mmpretrain_vit_frozen_stages_freeze_the_same_weights(frozen):
    kwargs = dict(arch=dict(VIT_ARCH), frozen_stages=frozen, out_type='avg_featmap')
    native = VisionTransformer(**kwargs)
    ours = build_ours(dict(type='VisionTransformer', **kwargs))

    def frozen_(module):
        return not any(p.requires_grad for p in module.parameters())

    pairs = [(native.patch_embed, ours.patch_embed), (native.ln1, ours.norm),
             (native.ln2, ours.avg_norm)] + list(zip(native.layers, ours.blocks))
    assert [frozen_(a) for a, _ in pairs] == [frozen_(b) for _, b in pairs]
    for name in ('pos_embed', 'cls_token'):
        assert getattr(native, name).requires_grad == getattr(ours, name).requires_grad
    assert frozen_(ours.patch_embed) == (frozen > 0)
    assert frozen_(ours.norm) == (frozen == 3)  # every layer: the norms after them too


def test_translated_vit_runs_with_dge_without_class_token():
    cfg = dict(type='VisionTransformer', arch=dict(VIT_ARCH), img_size=64, with_cls_token=False,
               out_type='featmap')
    model = build_ours(cfg, dge_cfg=dict(granularities=(1, 2)))
    assert dge_encoders(model) and model.cls_token is None
    out = model(torch.randn(1, 3, 64, 64))
    assert out[0].shape == (1, 64, 4, 4)


# --- PVTv2 / MiT: the arch dicts (their outputs are tested with the backbones) --------------
def test_mmdet_pvtv2_translates_to_an_explicit_pvtv2():
    got = translate_backbone(dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=32,
                                  num_layers=[2, 2, 2, 2], init_cfg=dict(checkpoint='b0.pth')))
    assert got == dict(
        type='vtpack_mm.PVTv2',
        arch=dict(depths=[2, 2, 2, 2], embed_dims=[32, 64, 160, 256], num_heads=[1, 2, 5, 8],
                  mlp_ratios=[8, 8, 4, 4], sr_ratios=[8, 4, 2, 1]),
        in_channels=3, patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], paddings=[3, 1, 1, 1],
        out_indices=(0, 1, 2, 3), qkv_bias=True, drop_rate=0., attn_drop_rate=0.,
        drop_path_rate=0.1, norm_cfg=dict(type='LN', eps=1e-6), act_cfg=dict(type='GELU'),
        init_cfg=dict(type='Pretrained', checkpoint='b0.pth'))


def test_mmseg_mit_translates_to_an_explicit_mit():
    got = translate_backbone(dict(type='MixVisionTransformer', embed_dims=64,
                                  num_layers=[3, 6, 40, 3], num_heads=[1, 2, 5, 8],
                                  drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                                  pretrained='mit_b5.pth', with_cp=True), scope='mmseg')
    assert got == dict(
        type='vtpack_mm.MiT',
        arch=dict(depths=[3, 6, 40, 3], embed_dims=[64, 128, 320, 512], num_heads=[1, 2, 5, 8],
                  mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1]),
        in_channels=3, patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], paddings=[3, 1, 1, 1],
        with_cp=True, out_indices=(0, 1, 2, 3), qkv_bias=True, drop_rate=0.,
        attn_drop_rate=0., drop_path_rate=0.1, norm_cfg=dict(type='LN', eps=1e-6),
        act_cfg=dict(type='GELU'), init_cfg=dict(type='Pretrained', checkpoint='mit_b5.pth'))


@pytest.mark.parametrize('path, expected', [
    ('mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py', 'vtpack_mm.PVT'),
    ('mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py', 'vtpack_mm.PVTv2'),
    ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', 'vtpack_mm.MiT'),
    ('mmpretrain::deit/deit-small_4xb256_in1k.py', 'vtpack_mm.DeiT'),
    ('mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k-384px.py', 'vtpack_mm.DeiT'),
])
def test_the_frameworks_own_configs_translate(tmp_path, path, expected):
    user = tmp_path / 'user_cfg.py'
    user.write_text(f'_base_ = {path!r}\n')
    source = Config.fromfile(str(user))
    cfg = translate_model_config(source, dge_cfg=dict(granularities=(1, 2, 4)), budget=0.5)
    assert cfg.model.backbone.type == expected and cfg.model.backbone.dge_cfg
    assert 'vtpack_mm' in cfg.custom_imports.imports
    assert cfg.custom_hooks[-1] == dict(type='vtpack_mm.BudgetLossHook', budget=0.5,
                                        loss_weight=1.0)

    # the rest of the model (neck, heads, preprocessor) and the runtime are kept
    def rest(model):
        return {k: v for k, v in model.items() if k not in ('backbone', 'pretrained')}

    assert rest(cfg.model) == rest(source.model) and len(rest(cfg.model)) > 1
    assert cfg.train_dataloader == source.train_dataloader
    assert 'dge_cfg' not in source.model.backbone  # the source is left as it was


def test_mmseg_model_pretrained_moves_to_the_backbone():
    cfg = Config(dict(default_scope='mmseg', model=dict(
        type='EncoderDecoder', pretrained='mit_b0.pth',
        backbone=dict(type='MixVisionTransformer', embed_dims=32, num_layers=[2, 2, 2, 2]))))
    out = translate_model_config(cfg)
    assert out.model.pretrained is None
    assert out.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='mit_b0.pth')
    assert out.custom_imports == dict(imports=['vtpack_mm'], allow_failed_imports=False)


# --- what passes through, what is refused --------------------------------------------------
def test_our_own_types_pass_through():
    cfg = dict(type='vtpack_mm.PVT', arch='tiny', _delete_=True)
    assert translate_backbone(cfg) == cfg
    assert translate_backbone(cfg, dge_cfg=dict(granularities=(1, 2)))['dge_cfg'] == \
        dict(granularities=(1, 2))


@pytest.mark.parametrize('cfg, scope', [
    (dict(type='mmdet.SwinTransformer'), None), (dict(type='ResNet', depth=50), 'mmdet'),
    (dict(type='ConvNeXt'), 'mmpretrain'), (dict(type='VisionTransformer'), 'mmseg'),
    (dict(type='mmseg.VisionTransformer'), None)])
def test_unsupported_types_list_the_supported_ones(cfg, scope):
    with pytest.raises(ValueError, match='no vtpack_mm translation') as err:
        translate_backbone(cfg, scope=scope)
    for name in list(NATIVE) + ['vtpack_mm.PVT', 'vtpack_mm.DeiT', 'vtpack_mm.MiT']:
        assert name in str(err.value)


PVT = dict(type='PyramidVisionTransformer')
PVTV2 = dict(type='PyramidVisionTransformerV2')
VIT = dict(type='VisionTransformer', arch=dict(VIT_ARCH))


@pytest.mark.parametrize('cfg, name', [
    (dict(PVT, strides=[2, 2, 2, 2]), 'strides'),
    (dict(PVT, paddings=[1, 0, 0, 0]), 'paddings'),
    (dict(PVT, use_abs_pos_embed=False), 'use_abs_pos_embed'),
    (dict(PVT, norm_after_stage=True), 'norm_after_stage'),
    (dict(PVT, use_conv_ffn=True), 'use_conv_ffn'),
    (dict(PVT, num_heads=[1, 2, 5]), 'num_heads'),
    (dict(PVT, out_indices=(-1, )), 'out_indices'),
    (dict(PVT, frozen_stages=1), 'frozen_stages'),  # mmdet's PVT has none
    (dict(PVT, pretrained='a.pth', init_cfg=dict(checkpoint='b.pth')), 'pretrained'),
    (dict(PVTV2, use_abs_pos_embed=True), 'use_abs_pos_embed'),
    (dict(PVTV2, use_conv_ffn=False), 'use_conv_ffn'),
    (dict(type='MixVisionTransformer', mlp_ratios=[4, 4, 4, 4]), 'mlp_ratios'),
    (dict(VIT, layer_scale_init_value=0.1), 'layer_scale_init_value'),
    (dict(VIT, layer_cfgs=dict(ffn_type='swiglu_fused')), "layer_cfgs['ffn_type']"),
    (dict(VIT, layer_cfgs=dict(num_fcs=3)), "layer_cfgs['num_fcs']"),
    (dict(VIT, layer_cfgs=dict(drop_path_rate=0.3)), "layer_cfgs['drop_path_rate']"),
    (dict(VIT, layer_cfgs=[dict(act_cfg=dict(type='ReLU'))] + [{}] * 2), "layer_cfgs['act_cfg']"),
    (dict(VIT, patch_cfg=dict(padding='same')), "patch_cfg['padding']"),
    (dict(VIT, patch_cfg=dict(norm_cfg=dict(type='LN'))), "patch_cfg['norm_cfg']"),
    (dict(VIT, norm_cfg=dict(type='BN')), 'norm_cfg'),
    (dict(VIT, patch_size=(16, 8)), 'patch_size'),
    (dict(VIT, arch='tiny'), 'arch'),
    (dict(VIT, arch=dict(VIT_ARCH, qkv_bias=False)), 'arch'),
    (dict(VIT, frozen_stages=4), 'frozen_stages'),
    (dict(VIT, beit_style=True), 'beit_style'),
])
def test_what_we_cannot_honour_is_refused_by_name(cfg, name):
    with pytest.raises(ValueError) as err:
        translate_backbone(cfg)
    assert name in str(err.value)


def test_distilled_vit_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match='distillation token.*deit-small'):
        translate_backbone(dict(type='mmpretrain.DistilledVisionTransformer', arch='deit-small'))


def test_fallback_tables_are_the_installed_signatures():
    """Used when a framework is not installed: they must say what the installed one does."""
    for key in NATIVE:
        assert native_defaults(key) == FALLBACK_DEFAULTS[key], key
    assert VisionTransformer.arch_zoo == FALLBACK_VIT_ARCHS


def test_translate_config_tool_writes_a_config_that_loads(tmp_path, monkeypatch, capsys):
    import os
    import runpy
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tool = os.path.join(root, 'tools', 'misc', 'translate_config.py')
    user = tmp_path / 'my_segformer.py'
    user.write_text("_base_ = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'\n")
    out = tmp_path / 'my_segformer_dge.py'
    for argv, dge in [(['--budget', '0.4', '-o', str(out)], True), ([], False)]:
        monkeypatch.setattr(sys, 'argv', [tool, str(user)] + argv)
        runpy.run_path(tool, run_name='__main__')
    printed = capsys.readouterr().out  # without -o: the vanilla translation, printed
    assert "type='vtpack_mm.MiT'" in printed and 'dge_cfg' not in printed
    cfg = Config.fromfile(str(out))
    assert cfg.model.backbone.type == 'vtpack_mm.MiT'
    assert cfg.model.backbone.dge_cfg == dict(granularities=(1, 2, 4))
    assert cfg.custom_hooks[-1].type == 'vtpack_mm.BudgetLossHook'
    assert cfg.custom_hooks[-1].budget == 0.4
    assert cfg.custom_imports.imports == ['vtpack_mm']
