"""Evaluating a trained model with what DGE costs: the config's own test metrics beside the
complexity ratio and the backbone MACs of every test image (tools/misc/*demo_report.py)."""
import os.path as osp
import time
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..dge import last_complexity
from .coco_bootstrap import bootstrap_map, result_files
from .loading import backbone_of


def evaluate(config: Union[str, Config], checkpoint: Optional[str], work_dir: str,
             shift: float = 0.0, bootstrap: int = 0) -> dict:
    """The config's test metrics of ``checkpoint``, with beta and the backbone MACs of
    every test image at inference (budget knob ``shift``) and the test time per image.

    With ``bootstrap`` > 0 and a COCO evaluator, also the 95 % bootstrap interval of each
    COCO mAP over the test images (that many resamples;
    :func:`~vtpack_mm.analysis.coco_bootstrap.bootstrap_map`), under ``intervals``.

    The backbone must be a vtpack_mm one (it keeps the cost record of each pass); a
    native backbone's config is translated first by the caller
    (:func:`vtpack_mm.native.translate_model_config`).
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else Config(config.to_dict())
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.default_hooks.logger.interval = 1000
    if cfg.model.backbone.get('dge_cfg'):
        cfg.model.backbone.dge_cfg.logit_shift = float(shift)
    coco = bootstrap > 0 and 'Coco' in str(cfg.test_evaluator.get('type', ''))
    if coco:  # keep the results files: the bootstrap reads them
        cfg.test_evaluator.outfile_prefix = osp.join(work_dir, 'results')
    runner = Runner.from_cfg(cfg)
    backbone = backbone_of(runner.model)
    betas, dynamic, static = [], [], []

    def record(module, args, output):
        meter, B = last_complexity(module), output[0].shape[0]
        # (B,) per image with DGE; one number for a vanilla backbone
        betas.extend(torch.as_tensor(meter.ratio()).float().expand(B).tolist())
        gmacs = torch.as_tensor(meter.total_dynamic(), dtype=torch.float64) / 1e9
        dynamic.extend(gmacs.expand(B).tolist())
        static.append(meter.total_static() / 1e9)

    handle = backbone.register_forward_hook(record)
    start = time.perf_counter()
    metrics = runner.test()
    seconds = time.perf_counter() - start
    handle.remove()
    intervals = {}
    if coco:
        for kind, path in result_files(cfg.test_evaluator.outfile_prefix).items():
            intervals[kind] = bootstrap_map(cfg.test_evaluator.ann_file, path, kind,
                                            resamples=bootstrap)
    return dict(metrics={k: float(v) for k, v in metrics.items()}, intervals=intervals,
                beta=float(np.mean(betas)), beta_min=float(np.min(betas)),
                beta_max=float(np.max(betas)), dynamic_gmacs=float(np.mean(dynamic)),
                static_gmacs=float(np.mean(static)), images=len(betas),
                test_ms_per_image=1000 * seconds / max(1, len(betas)))


def wall_seconds(run_dir: str) -> Optional[int]:
    """The training wall time a run folder recorded (``wall_seconds``, one line per
    attempt), or None."""
    path = osp.join(run_dir, 'wall_seconds')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return sum(int(line) for line in f if line.strip())


def mean_sd(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of two or more values."""
    if len(values) < 2:
        raise ValueError(f'a standard deviation needs two or more values, got {len(values)}')
    return float(np.mean(values)), float(np.std(values, ddof=1))


def spread(values: Sequence[Optional[float]], fmt: str = '{:.3f}') -> str:
    """'a / b (mean m, s.d. s)' of the values given (None skipped; s.d. over n - 1); one
    value as it is."""
    values = [v for v in values if v is not None]
    if not values:
        return 'n/a'
    if len(values) == 1:
        return fmt.format(values[0])
    mean, sd = mean_sd(values)
    return ' / '.join(fmt.format(v) for v in values) + \
        f' (mean {fmt.format(mean)}, s.d. {fmt.format(sd)})'
