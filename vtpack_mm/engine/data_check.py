"""Fail early, with the path named, when a config's dataset is not where it says."""
import os.path as osp


def _dataset_paths(dataset):
    """(what, path) pairs a dataset config reads: data_root, ann_file, data_prefix."""
    if dataset is None:
        return []
    if 'datasets' in dataset:  # ConcatDataset and the like
        return [p for d in dataset['datasets'] for p in _dataset_paths(d)]
    if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset
        return _dataset_paths(dataset['dataset'])
    root = dataset.get('data_root') or ''
    out = [('data_root', root)] if root else []
    ann = dataset.get('ann_file')
    if ann:
        out.append(('ann_file', ann if osp.isabs(ann) else osp.join(root, ann)))
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, dict):
        for key, value in prefix.items():
            if isinstance(value, str) and value:
                out.append((f'data_prefix.{key}', osp.join(root, value)))
    elif isinstance(prefix, str) and prefix:
        out.append(('data_prefix', osp.join(root, prefix)))
    return out


def check_dataset_paths(cfg, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')):
    """Raise FileNotFoundError naming the first missing path of the given dataloaders.

    Only local paths are checked (URIs such as s3:// are left to their backends).
    """
    for name in loaders:
        loader = cfg.get(name)
        if not loader:
            continue
        for what, path in _dataset_paths(loader.get('dataset')):
            if '://' in path:
                continue
            if not osp.exists(path):
                raise FileNotFoundError(
                    f'{name}.dataset.{what}: {path!r} does not exist (working directory '
                    f'{osp.abspath(".")}). Point the config at your data; for the demo data '
                    f'run: python tools/misc/make_shapes_dataset.py data/shapes')
