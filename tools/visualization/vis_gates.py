"""Draw each stage's chosen granularity over images (the paper's Fig. 4), with mmengine's
Visualizer.

    python tools/visualization/vis_gates.py CONFIG [--checkpoint CKPT] --images DIR
        --out DIR [--limit 8] [--size H W] [--logit-shift S]

One picture per image, drawn as the paper's Fig. 4: the input, then for the first DGE layer
of every stage the image with each region lightly filled in its granularity's colour
(phi = 1 red, 2 green, 4 blue) and cut into its patches, titled with the stage's beta, over
a legend. Small images are upscaled so that each cell is large enough to see.
Written through mmengine's Visualizer with a local backend: OUT/vis_data/vis_image/*.png.
To log such pictures during validation, add ``dict(type='vtpack_mm.GateVisualizationHook')``
to custom_hooks; they go to the config's own vis backends.
"""
import os.path as osp

import torch
from mmengine.visualization import Visualizer

from vtpack_mm.analysis import (backbone_of, build_model, image_paths, image_tool_parser,
                                load_images)
from vtpack_mm.dge import last_complexity
from vtpack_mm.visualization import draw_gates, stage_betas


def main():
    parser = image_tool_parser(__doc__.splitlines()[0], limit=8)
    parser.add_argument('--logit-shift', type=float, help='set the budget knob first')
    args = parser.parse_args()
    model = build_model(args.config, args.checkpoint)
    backbone = backbone_of(model)
    if not backbone.dge_modules():
        raise SystemExit('the backbone has no DGE blocks: there are no gates to draw')
    if args.logit_shift is not None:
        backbone.set_logit_shift(args.logit_shift)
    paths = image_paths(args.images, args.limit)
    tensors, rgbs = load_images(paths, model.cfg, args.size, with_rgb=True)
    vis = Visualizer(name='vis_gates', vis_backends=[dict(type='LocalVisBackend')],
                     save_dir=args.out)
    for path, x, rgb in zip(paths, tensors, rgbs):
        with torch.no_grad():
            backbone(x)
        beta = last_complexity(backbone).ratio().item()
        name = osp.splitext(osp.basename(path))[0]
        vis.add_image(f'gates_{name}', draw_gates(backbone, rgb))
        print(f'{name}: beta {beta:.3f}; ' + ', '.join(
            f'{k} {v:.3f}' for k, v in stage_betas(backbone).items()))
    print(f'pictures in {osp.join(args.out, "vis_data", "vis_image")}')


if __name__ == '__main__':
    main()
