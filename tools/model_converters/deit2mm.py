"""Convert an official DeiT / timm ViT or mmpretrain ViT checkpoint to vtpack_mm's DeiT.

    python tools/model_converters/deit2mm.py SRC DST

The layout is detected from the keys; an mmpretrain classifier's ``backbone.`` keys are
taken. DST holds backbone weights for ``init_cfg=dict(type='Pretrained', ...)``; a
224-px position table is resized to the model's on load.
"""
from vtpack_mm.models.converters import detect_and_convert_deit
from vtpack_mm.models.converters.io import run_backbone_converter

if __name__ == '__main__':
    run_backbone_converter(__doc__.splitlines()[0], detect_and_convert_deit, 'deit')
