"""Convert an official PVT v1 (whai362/PVT) or mmdet PVT checkpoint to vtpack_mm's PVT.

    python tools/model_converters/pvt2mm.py SRC DST

The layout is detected from the keys; an mmdet detector checkpoint's ``backbone.`` keys
are taken. DST holds backbone weights for ``init_cfg=dict(type='Pretrained', ...)``.
Official checkpoints use LayerNorm eps 1e-5 in the patch embeddings: set
``patch_norm_cfg=dict(type='LN', eps=1e-5)`` to reproduce them exactly.
"""
from vtpack_mm.models.converters import detect_and_convert_pvt
from vtpack_mm.models.converters.io import run_backbone_converter

if __name__ == '__main__':
    run_backbone_converter(__doc__.splitlines()[0], detect_and_convert_pvt, 'pvt')
