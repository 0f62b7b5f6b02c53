"""Latency measurement: interleaved repeats, medians."""
import statistics
import time
from typing import Callable, Dict, List

import torch


def _sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def time_variants(variants: Dict[str, Callable[[], object]], warmup: int = 2,
                  repeats: int = 7, device='cpu', grad: bool = False,
                  progress: bool = False) -> Dict[str, List[float]]:
    """Seconds per call of each variant, measured round-robin (the starting variant
    rotating) so that drifts of the machine (thermal, other load) hit every variant alike.
    Under ``torch.inference_mode`` unless ``grad`` (for variants that run a backward
    pass). ``progress`` shows mmengine's progress bar over the warm-up and timed rounds."""
    with torch.inference_mode(not grad):
        return _time_round_robin(variants, warmup, repeats, device, progress)


def _time_round_robin(variants, warmup, repeats, device, progress=False):
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(warmup + repeats)
    for _ in range(warmup):
        for fn in variants.values():
            fn()
        if bar:
            bar.update()
    _sync(device)
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        # each round starts with the next variant, so that none always runs right after
        # the same one (e.g. after another variant's large allocations were freed)
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = variants[name]
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t)
        if bar:
            bar.update()
    if bar:
        print(flush=True)
    return times


def summarize(times: List[float]) -> Dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return dict(median=statistics.median(times), q1=q[0], q3=q[2], n=len(times))


def paired_speedups(times: Dict[str, List[float]], base: str) -> Dict[str, float]:
    """Median over repeats of base_time / variant_time, each pair taken in the same round
    (so drifts of the machine cancel out)."""
    return {name: statistics.median(b / v for b, v in zip(times[base], ts))
            for name, ts in times.items()}


def stats_cells(s: Dict[str, float], scale: float = 1.0) -> str:
    """A :func:`summarize` result as table cells: the median and the q1..q3 range, times
    ``scale`` (e.g. 1e3 for milliseconds)."""
    return f'{s["median"] * scale:9.3f} {s["q1"] * scale:7.3f}..{s["q3"] * scale:<7.3f}'
