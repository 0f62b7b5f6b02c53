"""Convert a checkpoint of the paper's release (StevenGrove/vtpack) to vtpack_mm.

    python tools/model_converters/vtpack2mm.py SRC DST --model {deit,pvt,dpvt} [--with-head]

SRC is the release's file (a dict whose 'model' entry is the state dict). DST holds the
backbone weights for ``init_cfg=dict(type='Pretrained', checkpoint=DST)``, or with
--with-head a whole mmpretrain ImageClassifier (LinearClsHead for PVT/DPVT,
VisionTransformerClsHead for DeiT). The DGE granularities the routers were trained with
are printed and stored in the file's meta.
"""
import argparse

from vtpack_mm.models.converters import convert_vtpack
from vtpack_mm.checkpoint import load_source, save_converted

HEAD_KEYS = dict(deit='head.layers.head.', pvt='head.fc.', dpvt='head.fc.')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--model', required=True, choices=['deit', 'pvt', 'dpvt'])
    parser.add_argument('--with-head', action='store_true',
                        help='write a whole mmpretrain classifier, not only the backbone')
    parser.add_argument('--trust-source', action='store_true',
                        help='allow full unpickling of SRC (the release pickles its args)')
    args = parser.parse_args()
    state = load_source(args.src, args.trust_source)
    backbone, head, phis = convert_vtpack(state, args.model)
    head = {HEAD_KEYS[args.model] + k.split('.', 1)[1]: v
            for k, v in head.items() if k.startswith('head.')} if args.with_head else None
    save_converted(args.dst, backbone, head, dict(source='vtpack', model=args.model,
                                                  dge_granularities=phis))
    print(f'wrote {args.dst}: {len(backbone)} backbone tensors'
          + (f', {len(head)} head tensors' if head else ''))
    if phis:
        print(f'DGE routers trained with granularities {tuple(phis)}: set '
              f'dge_cfg=dict(granularities={tuple(phis)}) in the config')


if __name__ == '__main__':
    main()
