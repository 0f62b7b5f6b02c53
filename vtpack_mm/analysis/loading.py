"""Build a model from any vtpack_mm config and feed it images, for the analysis tools."""
import copy
import glob
import importlib
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from ..compat import allow_runner_checkpoints
from ..dge import find_backbone

# the ImageNet statistics (RGB, 0-255) every OpenMMLab config normalises with
IMAGENET_NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# scikit-image's bundled photos: the benchmarks' default inputs
SAMPLE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')


def sample_photos():
    """scikit-image's bundled photos as RGB uint8 arrays, by name."""
    from skimage import data
    return {name: getattr(data, name)()[..., :3] for name in SAMPLE_PHOTOS}


def write_sample_photos(folder: str) -> str:
    """scikit-image's bundled photos written as PNG files into ``folder``; returns it."""
    import mmcv
    for name, rgb in sample_photos().items():
        mmcv.imwrite(rgb[..., ::-1], osp.join(folder, f'{name}.png'))
    return folder


def load_config(config) -> Config:
    if isinstance(config, Config):
        return config
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} does not exist')
    return Config.fromfile(config)


def with_data_root(config, root: str) -> Config:
    """A copy of the config whose train/val/test datasets and COCO evaluators read from
    ``root`` (a folder laid out as the config's ``data_root``)."""
    cfg = Config(load_config(config).to_dict())
    root = root.rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader):
            cfg[loader].dataset.data_root = root
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(key)
        if isinstance(ev, dict) and ev.get('ann_file'):
            ann = ev.ann_file
            old = cfg.get('data_root')
            ev.ann_file = root + ann[len(old):] if old and ann.startswith(old) else ann
    cfg.data_root = root
    return cfg


def build_model(config, checkpoint: Optional[str] = None, device: str = 'cpu',
                cfg_options: Optional[dict] = None):
    """The config's whole model (detector, segmentor or classifier) in eval mode.

    ``cfg_options`` (a tool's ``--cfg-options``) are merged into the config first. Without
    a checkpoint the backbone's own pretrained ``init_cfg`` is dropped (no file needed) and
    the model keeps its initialisation.
    """
    allow_runner_checkpoints()
    cfg = load_config(config)
    if cfg_options:
        cfg = copy.deepcopy(cfg)
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmengine')
    if scope != 'mmengine':
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry' if scope != 'mmengine'
                                       else 'mmengine.registry').MODELS
    model_cfg = cfg.model.copy()
    if checkpoint is None and model_cfg.get('backbone', {}).get('init_cfg'):
        model_cfg.backbone.init_cfg = None
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(model_cfg)
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model)
    if checkpoint is None:
        model.init_weights()
    else:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.cfg = cfg
    return model.to(device).eval()


def backbone_of(model):
    """The vtpack_mm backbone of a whole model (or the backbone itself)."""
    return find_backbone(model, who='the analysis tools')


def image_paths(source: str, limit: Optional[int] = None) -> List[str]:
    """Image files of a folder (sorted, recursive) or a single file."""
    if osp.isfile(source):
        return [source]
    if not osp.isdir(source):
        raise FileNotFoundError(f'{source} is neither an image nor a folder')
    paths = sorted(p for p in glob.glob(osp.join(source, '**', '*'), recursive=True)
                   if p.lower().endswith(IMAGE_EXTS))
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTS)}) under {source}')
    return paths[:limit] if limit else paths


def normalization(cfg) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(mean, std, bgr_to_rgb) of the config's data preprocessor."""
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    mean = np.array(pre.get('mean', IMAGENET_NORM['mean']), np.float32)
    std = np.array(pre.get('std', IMAGENET_NORM['std']), np.float32)
    to_rgb = bool(pre.get('bgr_to_rgb', pre.get('to_rgb', False)))
    return mean, std, to_rgb


def load_images(paths: Sequence[str], cfg, size: Optional[Sequence[int]] = None,
                min_size: int = 32, with_rgb: bool = False):
    """Read images as normalised (1, 3, H, W) tensors, as the config's preprocessor does.

    ``size=(H, W)`` resizes every image to exactly that size (for batching and timing);
    otherwise images keep their size. ``with_rgb`` also returns each (resized) image as an
    RGB uint8 array, for drawing on.
    """
    import mmcv
    mean, std, to_rgb = normalization(cfg)
    out, rgb = [], []
    for path in paths:
        img = mmcv.imread(path)  # BGR uint8
        if img is None:
            raise ValueError(f'cannot read image {path}')
        if size is not None:
            img = mmcv.imresize(img, (int(size[1]), int(size[0])))
        if min(img.shape[:2]) < min_size:
            raise ValueError(f'{path}: {img.shape[1]}x{img.shape[0]} is smaller than the '
                             f'backbone minimum {min_size}x{min_size}')
        rgb.append(np.ascontiguousarray(img[..., ::-1]))
        if to_rgb:
            img = img[..., ::-1]
        x = (img.astype(np.float32) - mean) / std
        out.append(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])
    return (out, rgb) if with_rgb else out


def shaped_inputs(model, shape: Sequence[int],
                  images: Optional[str] = None) -> List[torch.Tensor]:
    """Normalised (1, 3, H', W') inputs for a fixed-size graph: the sample photos (or up to
    four ``images``) resized to ``shape`` = (H, W), then one noise image packed by the
    config's own pipeline. H' x W' is H x W padded as the data preprocessor pads (e.g. to
    multiples of 32); the photos are padded with zeros, as it pads them."""
    import tempfile

    import torch.nn.functional as F

    from .flops import shape_inputs
    size = (int(shape[0]), int(shape[1]))
    noise = shape_inputs(model, *size)[0]
    if images:
        photos = load_images(image_paths(images, len(SAMPLE_PHOTOS)), model.cfg, size)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            photos = load_images(image_paths(write_sample_photos(tmp)), model.cfg, size)
    ph, pw = noise.shape[-2:]
    return [F.pad(x, (0, pw - x.shape[-1], 0, ph - x.shape[-2])) for x in photos] + [noise]


__all__ = ['build_model', 'with_data_root', 'backbone_of', 'image_paths', 'load_images', 'load_config',
           'IMAGENET_NORM', 'SAMPLE_PHOTOS', 'sample_photos', 'shaped_inputs',
           'write_sample_photos']
