"""Generate the embedded demo data: shapes over flat and textured backgrounds.

    python tools/misc/make_shapes_dataset.py OUT_DIR [--num-train 160] [--num-val 40]
                                                     [--size 128] [--seed 0]

Deterministic (same arguments, same bytes) and takes seconds. Writes one set of scenes in
the three layouts the frameworks read:

    OUT_DIR/coco/{train,val}/*.png + coco/annotations/instances_{train,val}.json
                                      (COCO instances, RLE masks; mmdet CocoDataset)
    OUT_DIR/ade/images/{train,val}/*.png + ade/annotations/{train,val}/*.png
                                      (label PNGs: 0 background, 1 circle, 2 square,
                                       3 triangle; mmseg BaseSegDataset)
    OUT_DIR/imagenet/{train,val}/<class>/*.png
                                      (one shape per image; mmpretrain CustomDataset)

Half of the scenes have a flat background, half a textured one, so a Dynamic Grained
Encoder has both redundant and detailed regions to tell apart.
"""
import argparse
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'square', 'triangle')
PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 255), (60, 180, 75)]


def background(rng, size):
    """A flat colour, or a texture of random stripes and noise."""
    base = rng.randint(40, 216, size=3).astype(np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if rng.rand() < 0.5:
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        for _ in range(3):
            f = rng.uniform(0.05, 0.4)
            angle = rng.uniform(0, np.pi)
            wave = np.sin(f * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 6.3))
            img += wave[..., None] * rng.uniform(10, 40, size=3)
        img += rng.normal(0, 12, size=img.shape)
    return img


def shape_mask(rng, kind, size):
    """A boolean mask of one shape, 20-45% of the image side, fully inside the image."""
    side = rng.randint(int(size * 0.2), int(size * 0.45))
    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
    yy, xx = np.mgrid[:size, :size]
    if kind == 'circle':
        r = side / 2
        return (xx - x0 - r)**2 + (yy - y0 - r)**2 <= r * r
    if kind == 'square':
        return (xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)
    pts = np.array([[x0 + side / 2, y0], [x0, y0 + side - 1], [x0 + side - 1, y0 + side - 1]],
                   np.int32)
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def scene(rng, size, num_shapes):
    img = background(rng, size)
    labels = np.zeros((size, size), np.uint8)
    instances = []
    for _ in range(num_shapes):
        cls = rng.randint(len(CLASSES))
        m = shape_mask(rng, CLASSES[cls], size)
        if (labels[m] > 0).mean() > 0.3:  # mostly hidden behind an earlier shape: skip
            continue
        colour = rng.randint(0, 256, size=3).astype(np.float32)
        img[m] = colour
        # earlier shapes lose the pixels this one covers
        for inst in instances:
            inst['mask'] &= ~m
        labels[m] = cls + 1
        instances.append(dict(category=cls, mask=m.copy()))
    instances = [i for i in instances if i['mask'].sum() >= 16]
    return np.clip(img, 0, 255).astype(np.uint8), labels, instances


def coco_annotation(inst, ann_id, image_id):
    m = inst['mask']
    ys, xs = np.nonzero(m)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return dict(id=ann_id, image_id=image_id, category_id=inst['category'] + 1,
                bbox=[int(x0), int(y0), int(x1 - x0), int(y1 - y0)], area=int(m.sum()),
                iscrowd=0, segmentation=rle)


def write_split(out, split, count, size, rng, start_id):
    coco = dict(images=[], annotations=[],
                categories=[dict(id=i + 1, name=c) for i, c in enumerate(CLASSES)])
    # the split's folders are written afresh: a folder reader (mmseg, mmpretrain) must not
    # find the scenes of an earlier run with more of them
    for sub in (f'coco/{split}', f'ade/images/{split}', f'ade/annotations/{split}',
                f'imagenet/{split}'):
        shutil.rmtree(osp.join(out, sub), ignore_errors=True)
        os.makedirs(osp.join(out, sub))
    for c in CLASSES:
        os.makedirs(osp.join(out, 'imagenet', split, c))
    ann_id = start_id * 10
    for k in range(count):
        image_id = start_id + k
        name = f'{split}_{k:05d}.png'
        img, labels, instances = scene(rng, size, rng.randint(1, 4))
        cv2.imwrite(osp.join(out, 'coco', split, name), img)
        cv2.imwrite(osp.join(out, 'ade/images', split, name), img)
        cv2.imwrite(osp.join(out, 'ade/annotations', split, name), labels)
        coco['images'].append(dict(id=image_id, file_name=name, width=size, height=size))
        for inst in instances:
            coco['annotations'].append(coco_annotation(inst, ann_id, image_id))
            ann_id += 1
        single, _, single_inst = scene(rng, size, 1)
        while not single_inst:
            single, _, single_inst = scene(rng, size, 1)
        cls = CLASSES[single_inst[0]['category']]
        cv2.imwrite(osp.join(out, 'imagenet', split, cls, name), single)
    os.makedirs(osp.join(out, 'coco', 'annotations'), exist_ok=True)
    with open(osp.join(out, 'coco', 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return len(coco['annotations'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output folder, e.g. data/shapes')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if args.size < 32:
        raise ValueError(f'--size {args.size} is too small: the backbones need 32x32 images')
    rng = np.random.RandomState(args.seed)
    n_train = write_split(args.out, 'train', args.num_train, args.size, rng, 1)
    n_val = write_split(args.out, 'val', args.num_val, args.size, rng, 100000)
    print(f'wrote {args.num_train} train / {args.num_val} val scenes ({n_train} / {n_val} '
          f'instances) of {args.size}x{args.size} to {args.out}')


if __name__ == '__main__':
    main()
