"""Convert an official PVT v1 (whai362/PVT) or mmdet PVT checkpoint to vtpack_mm's PVT.

    python tools/model_converters/pvt2mm.py SRC DST

The layout is detected from the keys; an mmdet detector checkpoint's ``backbone.`` keys
are taken. DST holds backbone weights for ``init_cfg=dict(type='Pretrained', ...)``.
Official checkpoints use LayerNorm eps 1e-5 in the patch embeddings: set
``patch_norm_cfg=dict(type='LN', eps=1e-5)`` to reproduce them exactly.
"""
import argparse

from vtpack_mm.models.converters import detect_and_convert_pvt
from vtpack_mm.checkpoint import convert_backbone_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--trust-source', action='store_true',
                        help='allow full unpickling of SRC')
    args = parser.parse_args()
    weights = convert_backbone_file(args.src, args.dst, detect_and_convert_pvt, 'pvt', args.trust_source)
    print(f'wrote {args.dst}: {len(weights)} backbone tensors')


if __name__ == '__main__':
    main()
