"""Export a DGE model to ONNX (or an AOTInductor package) with the routing inside the graph,
and check it in ONNX Runtime (or the compiled package).

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --shape H W --out FILE
        [--part backbone|features|tensor] [--logit-shift S | --target-beta B]
        [--verify] [--images DIR] [--cfg-options k=v ...]

The graph takes one normalised (1, 3, H, W) image, as the config's data preprocessor makes
it, and computes per input the argmax of every router, a data-dependent number of queries
per DGE block, the pooling, the attention over the dense keys/values and the un-pooling.
It is made for H x W (padded as the data preprocessor pads) and batch 1: the region
layout depends on the map size, so export once per deployment size. The budget knob is
baked in: --logit-shift S, or the shift that brings the sample photos to --target-beta,
or the config's own ``dge_cfg.logit_shift``.

--part: ``backbone`` (default) the backbone's feature maps; ``features`` the model's
``extract_feat`` (backbone and neck); ``tensor`` the model's raw outputs
(``mode='tensor'``: a segmentor's logits, a classifier's scores; mmdet's two-stage
detectors post-process proposals inside that mode and do not export without mmdeploy's
rewrites). Without a checkpoint the routers get random weights, so that regions route
differently. --verify runs the file in ONNX Runtime on scikit-image's photos resized to
H x W (or --images) and on noise, and prints each input's beta, largest difference and the
smallest gap between two router logits (a near-tie, below float rounding, can route
differently in ONNX Runtime than in PyTorch).

An --out ending in ``.pt2`` writes an AOTInductor package instead: the same traced model
through ``torch.export``, compiled to C++ ahead of time (minutes on a 2-core CPU; needs a
C++ compiler). Load it with ``vtpack_mm.deployment.load_aoti`` (which also loads the
compiled ops a MiT's package calls) and call it with the image; --verify runs it.
"""
import argparse

import torch
from mmengine.config import DictAction

from vtpack_mm.analysis import (backbone_of, build_model, calibrate_logit_shift,
                                randomize_routers)
from vtpack_mm.analysis.loading import shaped_inputs
from vtpack_mm.deployment import (compare_aoti, compare_onnx, export_aoti, export_onnx,
                                  load_aoti, onnx_op_counts, onnx_session, router_margins)
from vtpack_mm.dge import dge_encoders, last_complexity, set_logit_shift

PARTS = ('backbone', 'features', 'tensor')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), required=True,
                        help='the input size the graph is made for')
    parser.add_argument('--out', required=True,
                        help='the .onnx file to write (.pt2: an AOTInductor package)')
    parser.add_argument('--part', choices=PARTS, default='backbone')
    knob = parser.add_mutually_exclusive_group()
    knob.add_argument('--logit-shift', type=float, help='bake in this budget shift')
    knob.add_argument('--target-beta', type=float,
                      help='bake in the shift that brings the sample photos to this beta')
    parser.add_argument('--verify', action='store_true',
                        help='compare ONNX Runtime with PyTorch on sample inputs')
    parser.add_argument('--images', help='images for --target-beta / --verify')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (as in tools/train.py)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    if args.part == 'tensor' and hasattr(model, 'rpn_head'):
        raise SystemExit(f"--part tensor: {type(model).__name__}'s tensor mode needs data "
                         f'samples and post-processes the proposals (NMS) inside it, which '
                         f'does not export without mmdeploy; export --part features '
                         f'(backbone and neck) instead')
    backbone = backbone_of(model)
    if not dge_encoders(backbone):
        print('note: the backbone has no DGE blocks; exporting it as a vanilla model')
    elif args.checkpoint is None:
        randomize_routers(backbone)
    samples = shaped_inputs(model, args.shape, args.images)
    if args.logit_shift is not None:
        set_logit_shift(backbone, args.logit_shift)
    elif args.target_beta is not None:
        shift, beta = calibrate_logit_shift(backbone, samples, args.target_beta)
        print(f'logit shift {shift:+.3f}: beta {beta:.3f} on {len(samples)} inputs')
    module, fn = dict(backbone=(backbone, None),
                      features=(model, model.extract_feat),
                      tensor=(model, lambda x: model(x, mode='tensor')))[args.part]
    dge_blocks = len(dge_encoders(backbone))
    H, W = samples[-1].shape[-2:]
    if args.out.endswith('.pt2'):
        export_aoti(module, samples[-1], args.out, fn=fn)
        print(f'wrote {args.out}: {args.part} at {H}x{W}, batch 1; an AOTInductor package '
              f'routing {dge_blocks} DGE blocks')
        runtime = 'AOTInductor'
    else:
        export_onnx(module, samples[-1], args.out, fn=fn)
        counts = onnx_op_counts(args.out)
        print(f'wrote {args.out}: {args.part} at {H}x{W}, batch 1; '
              f'{sum(counts.values())} nodes, {counts.get("NonZero", 0)} data-dependent query '
              f'counts (NonZero) for {dge_blocks} DGE blocks')
        runtime = 'ONNX Runtime'
    if not args.verify:
        return None
    if runtime == 'AOTInductor':
        runner = load_aoti(args.out)

        def compare(x):
            return compare_aoti(runner, module, x, fn)
    else:
        session = onnx_session(args.out)

        def compare(x):
            return compare_onnx(session, module, x, fn)
    worst = 0.0
    for i, x in enumerate(samples):
        with router_margins(backbone) as margins:
            diff, shapes = compare(x)
        beta = last_complexity(backbone).ratio().item()
        name = 'noise' if i == len(samples) - 1 else f'image {i}'
        margin = f', closest router logits {margins[0]:.1e} apart' if margins else ''
        print(f'{name}: beta {beta:.3f}, largest |{runtime} - PyTorch| {diff:.2e}{margin}')
        worst = max(worst, diff)
    print(f'outputs {shapes}; largest difference over {len(samples)} inputs: {worst:.2e}')
    return worst


if __name__ == '__main__':
    with torch.no_grad():
        main()
