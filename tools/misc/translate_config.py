"""Write a config whose native backbone is replaced by its vtpack_mm equivalent.

    python tools/misc/translate_config.py CONFIG [--dge] [--budget 0.5]
        [--granularities 1 2 4] [-o OUT.py]

CONFIG is your own mmdet, mmseg or mmpretrain config with one of the backbones
vtpack_mm translates (mmdet's PyramidVisionTransformer and PyramidVisionTransformerV2,
mmseg's MixVisionTransformer, mmpretrain's VisionTransformer). The output is the whole
config, merged, with that backbone replaced by vtpack_mm's (the same function: the
native checkpoints load as they are) and vtpack_mm in custom_imports; everything else is
kept. --dge makes the backbone a DGE one and adds the BudgetLossHook (target --budget);
--budget alone implies --dge. Train the result with tools/train.py.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config

from vtpack_mm.native import translate_model_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='your config (native backbone)')
    parser.add_argument('--dge', action='store_true',
                        help='add dge_cfg and the budget hook (the DGE version)')
    parser.add_argument('--budget', type=float, default=None,
                        help='target beta of the budget hook (default 0.5; implies --dge)')
    parser.add_argument('--budget-weight', type=float, default=1.0,
                        help='loss weight of the budget hook')
    parser.add_argument('--granularities', type=int, nargs='+', default=[1, 2, 4],
                        help='DGE granularities (default 1 2 4)')
    parser.add_argument('-o', '--out', help='output config file (default: print it)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config} does not exist')
    dge = args.dge or args.budget is not None
    dge_cfg = dict(granularities=tuple(args.granularities)) if dge else None
    budget = (0.5 if args.budget is None else args.budget) if dge else None
    cfg = translate_model_config(Config.fromfile(args.config), dge_cfg=dge_cfg, budget=budget,
                                 budget_weight=args.budget_weight)
    if args.out:
        cfg.dump(args.out)
        print(f'{args.config} -> {args.out}: backbone {cfg.model.backbone.type}'
              f'{" with DGE, budget " + str(budget) if dge else ""}', file=sys.stderr)
    else:
        print(cfg.pretty_text)


if __name__ == '__main__':
    main()
