"""Draw each stage's chosen granularity over images (the paper's Fig. 4), with mmengine's
Visualizer.

    python tools/visualization/vis_gates.py CONFIG [--checkpoint CKPT] --images DIR
        --out-dir DIR [--limit 8] [--size H W] [--logit-shift S] [--cfg-options k=v ...]

One picture per image, drawn as the paper's Fig. 4: the input, then for the first DGE layer
of every stage the image with each region lightly filled in its granularity's colour
(phi = 1 red, 2 green, 4 blue) and cut into its patches, titled with the stage's beta, over
a legend. Small images are upscaled so that each cell is large enough to see.
Written through mmengine's Visualizer with a local backend: OUT_DIR/vis_data/vis_image/*.png.
To log such pictures during validation, add ``dict(type='vtpack_mm.GateVisualizationHook')``
to custom_hooks; they go to the config's own vis backends.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.visualization import Visualizer

from vtpack_mm.analysis import backbone_of, build_model, image_paths, load_images
from vtpack_mm.dge import dge_encoders, last_complexity, set_logit_shift
from vtpack_mm.visualization import draw_gates, stage_betas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--images', required=True, help='an image or a folder of images')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--limit', type=int, default=8, help='use at most this many images')
    parser.add_argument('--size', type=int, nargs=2, help='resize images to H W')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (as in tools/train.py)')
    parser.add_argument('--logit-shift', type=float, help='set the budget knob first')
    args = parser.parse_args()
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    backbone = backbone_of(model)
    if not dge_encoders(backbone):
        raise SystemExit('the backbone has no DGE blocks: there are no gates to draw')
    if args.logit_shift is not None:
        set_logit_shift(backbone, args.logit_shift)
    paths = image_paths(args.images, args.limit)
    tensors, rgbs = load_images(paths, model.cfg, args.size, with_rgb=True)
    vis = Visualizer(name='vis_gates', vis_backends=[dict(type='LocalVisBackend')],
                     save_dir=args.out_dir)
    for path, x, rgb in zip(paths, tensors, rgbs):
        with torch.no_grad():
            backbone(x)
        beta = last_complexity(backbone).ratio().item()
        name = osp.splitext(osp.basename(path))[0]
        vis.add_image(f'gates_{name}', draw_gates(backbone, rgb))
        print(f'{name}: beta {beta:.3f}; ' + ', '.join(
            f'{k} {v:.3f}' for k, v in stage_betas(backbone).items()))
    print(f'pictures in {osp.join(args.out_dir, "vis_data", "vis_image")}')


if __name__ == '__main__':
    main()
