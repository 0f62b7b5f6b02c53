"""Convert an official DeiT / timm ViT or mmpretrain ViT checkpoint to vtpack_mm's DeiT.

    python tools/model_converters/deit2mm.py SRC DST

The layout is detected from the keys; an mmpretrain classifier's ``backbone.`` keys are
taken. DST holds backbone weights for ``init_cfg=dict(type='Pretrained', ...)``; a
224-px position table is resized to the model's on load.
"""
import argparse

from vtpack_mm.models.converters import detect_and_convert_deit
from vtpack_mm.checkpoint import convert_backbone_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--trust-source', action='store_true',
                        help='allow full unpickling of SRC')
    args = parser.parse_args()
    weights = convert_backbone_file(args.src, args.dst, detect_and_convert_deit, 'deit', args.trust_source)
    print(f'wrote {args.dst}: {len(weights)} backbone tensors')


if __name__ == '__main__':
    main()
