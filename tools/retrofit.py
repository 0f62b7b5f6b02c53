"""Make a vanilla checkpoint dynamic: distil it into the DGE version of its config's model.

    python tools/retrofit.py CONFIG VANILLA_CKPT --budget 0.5 [--scope routers]
        [--iters 200] [--lr 1e-3] [--granularities 1 2 4] [--work-dir DIR] [--resume]
        [--cfg-options key=value ...] [--launcher pytorch]

CONFIG is the vanilla model's config (a DGE config works too); VANILLA_CKPT its weights
(a whole detector/segmentor/classifier or a backbone, any layout the backbone loads). The
run uses the config's training images and never reads their labels: the loss is the
distance between the DGE backbone's outputs and the frozen vanilla backbone's
(vtpack_mm.RetrofitHook) plus the budget term (vtpack_mm.BudgetLossHook). It trains in
mmengine's Runner (logs with ETA, checkpoints, --resume, --launcher pytorch like
tools/train.py); the result, WORK_DIR/iter_<ITERS>.pth, is an ordinary DGE checkpoint of
the config dumped beside it, for tools/test.py, fine-tuning or the budget knob.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
# tools/train.py: the same Runner options and set-up
from train import build_cfg, run  # noqa: E402
from train import parse_args as parse_run_args  # noqa: E402

from vtpack_mm.compat import allow_runner_checkpoints, end_distributed_process  # noqa: E402
from vtpack_mm.engine.retrofit_config import retrofit_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the vanilla (or DGE) model config')
    parser.add_argument('checkpoint', help='the vanilla weights')
    parser.add_argument('--budget', type=float, default=0.5, help='target beta (gamma)')
    parser.add_argument('--scope', default='routers',
                        choices=['routers', 'routers_norms', 'backbone'],
                        help='what trains (default: the routers alone)')
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--lr', type=float, default=1e-3,
                        help='AdamW learning rate (routers: 10x)')
    parser.add_argument('--budget-weight', type=float, default=2.0)
    parser.add_argument('--warmup-iters', type=int, default=None,
                        help='budget warm-up from 1.0 (default: a quarter of --iters)')
    parser.add_argument('--granularities', type=int, nargs='+', default=None,
                        help='DGE granularities (default: the config\'s, else 1 2 4)')
    parser.add_argument('--train-mode', choices=['dense', 'sparse'], default=None)
    # --cfg-options (from tools/train.py) apply before and again after the retrofit settings
    return parse_run_args(parser)


def main():
    allow_runner_checkpoints()
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'vanilla checkpoint {args.checkpoint} does not exist')
    if not args.work_dir:
        stem = osp.splitext(osp.basename(args.config))[0]
        args.work_dir = osp.join('work_dirs', f'retrofit_{stem}_b{args.budget:g}_{args.scope}')

    def make_retrofit(cfg: Config) -> Config:
        return retrofit_config(cfg, args.checkpoint, budget=args.budget, scope=args.scope,
                               iters=args.iters, lr=args.lr, budget_weight=args.budget_weight,
                               warmup_iters=args.warmup_iters,
                               granularities=args.granularities, train_mode=args.train_mode)

    cfg = build_cfg(args, transform=make_retrofit)
    run(cfg)
    print(f'retrofit done: {osp.join(cfg.work_dir, f"iter_{args.iters}.pth")} '
          f'(config: {osp.join(cfg.work_dir, osp.basename(args.config))})')
    end_distributed_process()


if __name__ == '__main__':
    main()
