"""Make a release file from a training checkpoint: weights and meta only, hash in the name.

    python tools/model_converters/publish_model.py IN OUT

IN is a checkpoint saved by an mmengine Runner (``work_dirs/.../epoch_12.pth``). The
optimizer, parameter schedulers, message hub and any other training state are dropped;
``state_dict`` and ``meta`` (config text, seed, epoch/iter, dataset_meta) are kept. OUT
must end in ``.pth``; the file is written as ``<OUT stem>-<first 8 hex digits of its
sha256>.pth`` and that path is printed.
"""
import argparse
import os

from vtpack_mm.models.converters import publish

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', metavar='IN', help='Runner checkpoint')
    parser.add_argument('dst', metavar='OUT', help='release path, ending in .pth')
    args = parser.parse_args()
    final = publish(args.src, args.dst)
    mib = 2 ** 20
    print(f'{os.path.getsize(args.src) / mib:.1f} MiB -> {os.path.getsize(final) / mib:.1f} MiB')
    print(final)
