"""Run a DGE backbone on a real image and print the granularity map and complexity ratio.

The image is one of scikit-image's bundled samples (no download). Until a trained
checkpoint is given with --checkpoint, the routers are freshly initialised: they choose
the finest granularity everywhere (beta = 1, the vanilla computation); --force-coarse shows
the other end of the range.
"""
import argparse
import time

import numpy as np
import torch

import vtpack_mm
from vtpack_mm.dge import dge_encoders, forced_choice, last_complexity

SYMBOLS = {1: '.', 2: 'o', 4: '#'}


def load_image(name: str, size):
    from skimage import data, transform
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = transform.resize(img[..., :3], size, anti_aliasing=True).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    img = (img - mean) / std
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


def describe(model, title):
    meter = last_complexity(model)
    print(f'\n== {title}: beta = {meter.ratio().mean().item():.3f} '
          f'(dynamic {meter.total_dynamic().mean().item() / 1e9:.2f} GMACs / static '
          f'{meter.total_static() / 1e9:.2f} GMACs)')
    for name, r in meter.group_ratios().items():
        print(f'   {name}: {r.item():.3f}')
    first = meter.routing[0]
    phis = first.granularities
    grid = first.choice[0]
    counts = {phis[k]: int((grid == k).sum()) for k in range(len(phis))}
    print(f'   first DGE layer (stage 1): regions per granularity {counts}; '
          f"map ('.' phi=1, 'o' phi=2, '#' phi=4):")
    for row in grid.tolist():
        print('   ' + ''.join(SYMBOLS.get(phis[k], '?') for k in row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--image', default='astronaut', help='a skimage.data sample name')
    parser.add_argument('--size', type=int, nargs=2, default=[256, 256])
    parser.add_argument('--arch', default='small')
    parser.add_argument('--checkpoint', help='backbone weights (vtpack_mm or converted)')
    args = parser.parse_args()
    torch.manual_seed(0)
    init_cfg = dict(type='Pretrained', checkpoint=args.checkpoint) if args.checkpoint else None
    model = vtpack_mm.PVT(arch=args.arch, dge_cfg=dict(granularities=(1, 2, 4)),
                          init_cfg=init_cfg)
    model.init_weights()
    model.eval()
    x = load_image(args.image, tuple(args.size))
    print(f'PVT-{args.arch} + DGE on skimage.data.{args.image} at {tuple(args.size)}; '
          f'{len(dge_encoders(model))} DGE layers, granularities (1, 2, 4), region 4x4')
    with torch.no_grad():
        t = time.perf_counter()
        model(x)
        describe(model, f'routers as loaded ({time.perf_counter() - t:.2f} s)')
        t = time.perf_counter()
        with forced_choice(model, 'coarsest'):
            model(x)
        describe(model, f'every region forced to phi=4 ({time.perf_counter() - t:.2f} s)')


if __name__ == '__main__':
    main()
