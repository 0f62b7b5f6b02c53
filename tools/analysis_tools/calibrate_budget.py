"""Find the router logit shift that makes a trained DGE model reach a target beta.

    python tools/analysis_tools/calibrate_budget.py CONFIG [--checkpoint CKPT]
        --images DIR --target 0.4 [--size H W] [--limit 32] [--cfg-options k=v ...]

One checkpoint, many operating points: the shift adds ``s * (1 - 1/phi^2)`` to every
router's logits, so s > 0 buys speed with accuracy and s < 0 the reverse. Use the result
with ``--cfg-options model.backbone.dge_cfg.logit_shift=S`` in tools/test.py.
"""
import argparse

from mmengine.config import DictAction

from vtpack_mm.analysis import (backbone_of, build_model, calibrate_logit_shift, image_paths,
                                load_images, measure_beta)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--images', required=True, help='an image or a folder of images')
    parser.add_argument('--limit', type=int, default=32, help='use at most this many images')
    parser.add_argument('--size', type=int, nargs=2, help='resize images to H W')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (as in tools/train.py)')
    parser.add_argument('--target', type=float, required=True, help='target beta in [0, 1]')
    args = parser.parse_args()
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    backbone = backbone_of(model)
    images = load_images(image_paths(args.images, args.limit), model.cfg, args.size)
    before = measure_beta(backbone, images)
    shift, beta = calibrate_logit_shift(backbone, images, args.target, verbose=True)
    print(f'beta without shift: {before:.4f}')
    print(f'shift {shift:.4f} gives beta {beta:.4f} on {len(images)} images (target '
          f'{args.target})')
    print(f'use: --cfg-options model.backbone.dge_cfg.logit_shift={shift:.4f}')


if __name__ == '__main__':
    main()
