"""Convert an official PVT v1 (whai362/PVT) or mmdet PVT checkpoint to vtpack_mm's PVT.

    python tools/model_converters/pvt2mm.py SRC DST

The layout is detected from the keys; an mmdet detector checkpoint's ``backbone.`` keys
are taken. DST holds backbone weights for ``init_cfg=dict(type='Pretrained', ...)``.
Official checkpoints use LayerNorm eps 1e-5 in the patch embeddings: set
``patch_norm_cfg=dict(type='LN', eps=1e-5)`` to reproduce them exactly.
"""
import argparse

from vtpack_mm.models.converters import detect_and_convert_pvt
from vtpack_mm.models.converters.io import load_source, save_converted, strip_prefix


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--trust-source', action='store_true',
                        help='allow full unpickling of SRC')
    args = parser.parse_args()
    state = strip_prefix(load_source(args.src, args.trust_source))
    backbone = detect_and_convert_pvt(state)
    save_converted(args.dst, backbone, meta=dict(source='pvt'))
    print(f'wrote {args.dst}: {len(backbone)} backbone tensors')


if __name__ == '__main__':
    main()
