"""Train a detector, segmentor or classifier whose config uses vtpack_mm modules.

Works with mmdet, mmseg and mmpretrain configs alike (each config names its own
default_scope and imports vtpack_mm through custom_imports). Applies vtpack_mm.compat:
Runner checkpoints load and resume under torch's weights-only loading, and
``--launcher pytorch`` works on CPU-only machines (gloo).
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from vtpack_mm.compat import (allow_runner_checkpoints, end_distributed_process,
                              prepare_cpu_distributed)
from vtpack_mm.engine import check_dataset_paths


def add_run_args(parser):
    """The Runner options tools/train.py and tools/retrofit.py share."""
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help="resume from this checkpoint, or from the work dir's latest "
                        'when given without a path')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_args(parser=None):
    if parser is None:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument('config', help='config file')
    args = add_run_args(parser).parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args, transform=None) -> Config:
    """The config of ``args`` with its options applied; ``transform(cfg) -> cfg`` runs after
    ``--cfg-options`` and before the resume settings (tools/retrofit.py uses it)."""
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if transform is not None:
        cfg = transform(cfg)
        if args.cfg_options:  # the user's overrides win over the transform's settings
            cfg.merge_from_dict(args.cfg_options)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        from mmengine.runner import find_latest_checkpoint
        if find_latest_checkpoint(cfg.work_dir):
            cfg.resume = True
            cfg.load_from = None
        else:  # nothing to resume yet: start as without --resume (load_from kept)
            print(f'--resume: no checkpoint in {cfg.work_dir} yet, starting the run')
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return prepare_cpu_distributed(cfg, args.launcher)


def run(cfg: Config):
    check_dataset_paths(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    return runner


def main():
    allow_runner_checkpoints()
    run(build_cfg(parse_args()))
    end_distributed_process()


if __name__ == '__main__':
    main()
