"""FLOPs under the paper's A.3 protocol, with mmengine's analyzer for the static parts.

Counting conventions are mmengine's (fvcore's): a multiply-add is one FLOP, LayerNorm 5
per value, bilinear sampling 4 per value; element-wise activations are not counted.
mmengine has no handle for ``scaled_dot_product_attention``; :func:`sdpa_flop_jit` counts
it as two matrix products (q k^T and the weighted sum of values), as the analytic costs in
vtpack_mm.dge do.
"""
from math import prod
from typing import Dict, List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

from ..dge import last_complexity, vanilla_pass


def sdpa_flop_jit(inputs, outputs) -> int:
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, L, E = q
    S = k[-2]
    return 2 * prod(batch) * L * S * E


def count_flops(module, inputs) -> int:
    """mmengine's FLOP count of ``module(*inputs)``, SDPA included. Traced, our ops run
    their PyTorch references; the deformable one's weighted sum of the sampled rows is a
    matrix product, counted 4 per sampled value as mmengine counts bilinear sampling."""
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return int(analyzer.total())


class _TensorForward(torch.nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a module of its inputs alone."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


def test_inputs(model, paths: List[str]):
    """Preprocessed (inputs, data_samples) of each image through the config's test
    pipeline, annotations left out (so any image folder works)."""
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import DefaultScope
    cfg = model.cfg
    steps = [t for t in cfg.test_dataloader.dataset.pipeline
             if 'Annotation' not in t['type']]
    for t in steps:
        if t['type'].startswith('Pack') and 'meta_keys' in t:
            t['meta_keys'] = tuple(k for k in t['meta_keys'] if k != 'instances')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        pipeline = Compose(steps)
        out = []
        for i, path in enumerate(paths):
            sample = pipeline(dict(img_path=path, img_id=i, sample_idx=i))
            data = model.data_preprocessor(pseudo_collate([sample]), False)
            out.append((data['inputs'], data['data_samples']))
    return out


def shape_inputs(model, h: int, w: int):
    """Preprocessed (inputs, data_samples) of one H x W image of uniform noise (seeded),
    packed by the config's own test-pipeline packer with the image's meta. No resizing:
    the network sees H x W, padded only as the data preprocessor pads. Noise rather than a
    blank image so that regions differ and random routers do not all choose alike."""
    import numpy as np
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import DefaultScope
    cfg = model.cfg
    packers = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'].startswith('Pack')]
    if not packers:
        raise ValueError("the config's test pipeline has no Pack* step to build a data sample")
    pack = dict(packers[-1])
    if 'meta_keys' in pack:
        pack['meta_keys'] = tuple(k for k in pack['meta_keys'] if k != 'instances')
    meta = dict(img_path='', img_id=0, sample_idx=0, seg_map_path='', ori_shape=(h, w),
                img_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0), flip=False,
                flip_direction=None, reduce_zero_label=False)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        sample = Compose([pack])(dict(meta, img=img))
        data = model.data_preprocessor(pseudo_collate([sample]), False)
    return data['inputs'], data['data_samples']


@torch.no_grad()
def routed_flops(module, backbone, inputs) -> Dict[str, float]:
    """Static and dynamic FLOPs of ``module(inputs)``, a module that runs ``backbone``
    (the backbone itself or a whole model), under the A.3 protocol.

    Static: mmengine's count of the vanilla computation (every DGE block run as the vanilla
    block, whatever its granularities) plus the routers' own cost. Dynamic: that, with the
    backbone's static cost replaced by its cost per enabled query in the routed pass.
    """
    with vanilla_pass(backbone):
        vanilla_total = count_flops(module, (inputs, ))
        vanilla_backbone = last_complexity(backbone).total_static()
    module(inputs)  # the routed pass
    meter = last_complexity(backbone)
    routers = meter.total_static() - vanilla_backbone  # the meter's static counts them
    static_total = vanilla_total + routers
    dynamic_backbone = float(meter.total_dynamic().float().mean()) if torch.is_tensor(
        meter.total_dynamic()) else float(meter.total_dynamic())
    return dict(static=float(static_total),
                dynamic=float(static_total) - meter.total_static() + dynamic_backbone,
                backbone_static=meter.total_static(), backbone_dynamic=dynamic_backbone,
                beta=float(meter.ratio().float().mean()), layers=meter.layer_ratios())


@torch.no_grad()
def framework_flops(model, backbone, inputs, data_samples) -> int:
    """What mmdet's and mmseg's own get_flops report for the vanilla computation of
    ``model``: mmengine's analyzer with its default handles only (attention's matrix
    products, run by SDPA, count 0 there)."""
    analyzer = FlopAnalyzer(_TensorForward(model, data_samples), (inputs, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with vanilla_pass(backbone):
        return int(analyzer.total())


def model_flops(model, backbone, inputs, data_samples) -> Dict[str, float]:
    """:func:`routed_flops` of a whole model on one preprocessed input."""
    return routed_flops(_TensorForward(model, data_samples), backbone, inputs)
