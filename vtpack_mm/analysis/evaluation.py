"""Evaluating a trained model with what DGE costs: the config's own test metrics beside the
complexity ratio and the backbone MACs of every test image (tools/misc/*demo_report.py)."""
import os.path as osp
import time
from contextlib import nullcontext
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..dge import last_complexity
from .coco_bootstrap import bootstrap_map, interval_text, result_files
from .iou_bootstrap import bootstrap_miou, kept_iou_areas
from .loading import backbone_of


def evaluate(config: Union[str, Config], checkpoint: Optional[str], work_dir: str,
             shift: float = 0.0, bootstrap: int = 0) -> dict:
    """The config's test metrics of ``checkpoint``, with beta and the backbone MACs of
    every test image at inference (budget knob ``shift``) and the test time per image.

    With ``bootstrap`` > 0, also the 95 % bootstrap interval over the test images (that
    many resamples), under ``intervals``: of each COCO mAP with a COCO evaluator
    (:func:`~vtpack_mm.analysis.coco_bootstrap.bootstrap_map`, keys 'bbox', 'segm'), of
    the mIoU with mmseg's ``IoUMetric``
    (:func:`~vtpack_mm.analysis.iou_bootstrap.bootstrap_miou`, key 'mIoU').

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
    iou = bootstrap > 0 and 'IoUMetric' in str(cfg.test_evaluator.get('type', ''))
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
    with kept_iou_areas() if iou else nullcontext() as areas:
        metrics = runner.test()
    seconds = time.perf_counter() - start
    handle.remove()
    intervals = {}
    if iou:
        intervals['mIoU'] = bootstrap_miou(areas, resamples=bootstrap)
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


def interval_spread(values: Sequence[float], intervals: Sequence[Optional[dict]],
                    fmt: str = '{:.3f}') -> str:
    """'0.300 ± 0.041' per value (the ± only where an interval was measured), joined by
    ' / ', with their mean and standard deviation when there are several."""
    cells = [interval_text(v, iv, fmt) for v, iv in zip(values, intervals)]
    if not cells:
        return 'n/a'
    if len(cells) == 1:
        return cells[0]
    mean, sd = mean_sd(values)
    return ' / '.join(cells) + f' (mean {fmt.format(mean)}, s.d. {fmt.format(sd)})'


def mean_sd_text(values: Sequence[float], fmt: str = '{:.3f}') -> str:
    """'m ± s': mean and sample s.d. of two or more values (a model over seeds)."""
    mean, sd = mean_sd(values)
    return f'{fmt.format(mean)} ± {fmt.format(sd)}'


def mean_width_text(intervals: Sequence[Optional[dict]], fmt: str = '{:.3f}') -> str:
    """The mean half width of the evaluation intervals given, or 'n/a' if one is missing."""
    widths = [iv.get('half_width') if iv else None for iv in intervals]
    return fmt.format(float(np.mean(widths))) if widths and None not in widths else 'n/a'


def difference_text(values: Sequence[float], base: Sequence[float],
                    fmt: str = '{:+.3f}') -> str:
    """'d1 / d2 / ... (m ± s)': each value minus its ``base`` (a model against the vanilla
    model of its own seed), then their mean and sample s.d."""
    diffs = [v - b for v, b in zip(values, base)]
    mean, sd = mean_sd(diffs)
    return (' / '.join(fmt.format(d) for d in diffs) +
            f' ({fmt.format(mean)} ± {fmt.format(sd).lstrip("+")})')


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
