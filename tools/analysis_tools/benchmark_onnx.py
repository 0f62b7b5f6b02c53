"""Latency of the exported dynamic backbone in ONNX Runtime against the exported vanilla
one, with PyTorch eager beside them, as paired ratios in one run.

    python tools/analysis_tools/benchmark_onnx.py CONFIG [--checkpoint CKPT] --shape H W
        [--target-beta 0.5] [--threads 2] [--warmup 1] [--repeats 5] [--images DIR]
        [--cfg-options k=v ...] [--profile] [--aoti] [--out results.json]

The config's backbone is exported twice at H x W (padded as the data preprocessor pads),
batch 1: routed (the routing in the graph, the budget shift baked in) and vanilla (every
DGE block run as its vanilla block). Inputs: scikit-image's photos resized to H x W (or
--images) and one noise image; one timed call runs every input once. Variants, timed
round-robin; medians, and each speed-up is the median over rounds of the vanilla time of
the same runtime / the variant's time in that round:

  ort-vanilla, ort-dge      ONNX Runtime (CPU), --threads intra-op threads
  torch-vanilla, torch-dge  PyTorch eager (the compiled CPU kernels)
  aoti-vanilla, aoti-dge    with --aoti: torch.export + AOTInductor packages of both
                            (compiling takes minutes)

The FLOPs-ideal speed-up is the backbone's static / dynamic FLOPs on the same inputs.
Without --checkpoint the routers get random weights; either way the shift is calibrated so
that the inputs reach --target-beta. --profile adds ONNX Runtime's own profile of both
graphs (sessions of their own, before the timing): per input, a run's time, its operators'
kernel time, and the kernel time by operator type.
"""
import argparse
import json
import os.path as osp
import platform
import tempfile

import torch
from mmengine.config import DictAction

from vtpack_mm.analysis import (backbone_of, build_model, calibrate_logit_shift,
                                randomize_routers)
from vtpack_mm.analysis.latency import (paired_speedups, stats_cells, summarize,
                                        time_variants)
from vtpack_mm.analysis.loading import shaped_inputs
from vtpack_mm.deployment import (compare_aoti, compare_onnx, export_aoti, export_onnx,
                                  load_aoti, onnx_session, profile_onnx, router_margins,
                                  run_onnx)
from vtpack_mm.dge import dge_encoders, last_complexity, vanilla_pass


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), required=True)
    parser.add_argument('--target-beta', type=float, default=0.5)
    parser.add_argument('--images', help='up to four images (default: the sample photos)')
    parser.add_argument('--threads', type=int, default=2,
                        help='CPU threads of both runtimes (default 2)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--profile', action='store_true',
                        help="add ONNX Runtime's profile by operator type")
    parser.add_argument('--aoti', action='store_true',
                        help='add torch.export + AOTInductor packages of both backbones')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    backbone = backbone_of(model)
    if not dge_encoders(backbone):
        raise RuntimeError(f'{args.config}: the backbone has no DGE blocks (dge_cfg is None); '
                           f'give the DGE config, the vanilla variant is exported from it')
    if args.checkpoint is None:
        randomize_routers(backbone)
    inputs = shaped_inputs(model, args.shape, args.images)
    shift, beta = calibrate_logit_shift(backbone, inputs, args.target_beta, tol=0.01)
    static = dynamic = 0.0
    with torch.no_grad():
        for x in inputs:
            backbone(x)
            meter = last_complexity(backbone)
            static += meter.total_static()
            dynamic += float(meter.total_dynamic())
    diffs, margins = [], []
    with tempfile.TemporaryDirectory() as tmp:
        dge_file, vanilla_file = osp.join(tmp, 'dge.onnx'), osp.join(tmp, 'vanilla.onnx')
        export_onnx(backbone, inputs[-1], dge_file)
        with vanilla_pass(backbone):
            export_onnx(backbone, inputs[-1], vanilla_file)
        sessions = {name: onnx_session(f, args.threads)
                    for name, f in (('dge', dge_file), ('vanilla', vanilla_file))}
        for x in inputs:  # the exported graphs compute what PyTorch does
            with router_margins(backbone) as m:
                d = compare_onnx(sessions['dge'], backbone, x)[0]
            with vanilla_pass(backbone):
                d = max(d, compare_onnx(sessions['vanilla'], backbone, x)[0])
            diffs.append(d)
            margins.append(m[0])
        runners = {}
        if args.aoti:
            files = {name: osp.join(tmp, f'{name}.pt2') for name in ('dge', 'vanilla')}
            export_aoti(backbone, inputs[-1], files['dge'])
            with vanilla_pass(backbone):
                export_aoti(backbone, inputs[-1], files['vanilla'])
            runners = {name: load_aoti(f) for name, f in files.items()}
            for i, x in enumerate(inputs):
                diffs[i] = max(diffs[i], compare_aoti(runners['dge'], backbone, x)[0])
                with vanilla_pass(backbone):
                    diffs[i] = max(diffs[i], compare_aoti(runners['vanilla'], backbone, x)[0])
        profiles = {name: profile_onnx(f, inputs, args.threads) for name, f in
                    (('vanilla', vanilla_file), ('dge', dge_file))} if args.profile else {}
    worst = max(diffs)

    def ort(name):
        return lambda: [run_onnx(sessions[name], x) for x in inputs]

    def eager():
        for x in inputs:
            backbone(x)

    def eager_vanilla():
        with vanilla_pass(backbone):
            eager()

    def aoti(name):
        return lambda: [runners[name](x) for x in inputs]

    fns = {'ort-vanilla': ort('vanilla'), 'ort-dge': ort('dge'),
           'torch-vanilla': eager_vanilla, 'torch-dge': eager}
    if runners:
        fns.update({'aoti-vanilla': aoti('vanilla'), 'aoti-dge': aoti('dge')})
    times = time_variants(fns, args.warmup, args.repeats, progress=True)
    stats = {k: summarize(v) for k, v in times.items()}
    paired = {**paired_speedups({k: times[k] for k in ('ort-vanilla', 'ort-dge')},
                                'ort-vanilla'),
              **paired_speedups({k: times[k] for k in ('torch-vanilla', 'torch-dge')},
                                'torch-vanilla')}
    if runners:
        paired.update(paired_speedups({k: times[k] for k in ('aoti-vanilla', 'aoti-dge')},
                                      'aoti-vanilla'))
    over_torch = paired_speedups({k: times[k] for k in times if k.endswith('-dge')},
                                 'torch-dge')
    ort_over_torch = over_torch['ort-dge']
    ideal = static / dynamic
    H, W = inputs[-1].shape[-2:]
    results = dict(config=args.config, checkpoint=args.checkpoint, shape=[H, W],
                   processor=platform.processor() or platform.machine(),
                   threads=args.threads, inputs=len(inputs), logit_shift=shift, beta=beta,
                   flops_static=static, flops_dynamic=dynamic, flops_ideal_speedup=ideal,
                   speedup=paired, ort_dge_over_torch_dge=ort_over_torch,
                   aoti_dge_over_torch_dge=over_torch.get('aoti-dge'),
                   largest_difference=worst, differences=diffs, router_margins=margins,
                   stats=stats, times=times, profile=profiles)
    print(f'\n{osp.basename(args.config)} backbone at {H}x{W}, batch 1, {len(inputs)} inputs, '
          f'{args.threads} threads: beta {beta:.3f}, FLOPs-ideal {ideal:.2f}x; ONNX Runtime '
          f'{"and AOTInductor match" if runners else "matches"} PyTorch within {worst:.1e}')
    for i, (d, m) in enumerate(zip(diffs, margins)):
        if d > 1e-4:
            print(f'input {i}: an exported model differs by {d:.2e}; the closest two router logits '
                  f'of any region are {m:.1e} apart' + (' (a near-tie: that region can route '
                                                        'differently)' if m < 1e-4 else ''))
    print(f'{"variant":>14s} {"median s":>9s} {"q1..q3 s":>15s} {"speed-up":>9s}'
          ' (median of paired ratios against the same runtime\'s vanilla)')
    for name, s in stats.items():
        print(f'{name:>14s} {stats_cells(s)} '
              f'{paired[name]:8.2f}x')
    for name in (n for n in ('ort-dge', 'aoti-dge') if n in times):
        print(f'{name} is {over_torch[name]:.2f}x the speed of torch-dge and reaches '
              f'{paired[name] / ideal:.0%} of the FLOPs-ideal speed-up')
    if profiles:
        van, dge = profiles['vanilla'], profiles['dge']
        print(f'\nONNX Runtime profile, ms per input: a run {van["run_ms"]:.1f} vanilla / '
              f'{dge["run_ms"]:.1f} DGE, of which operator kernels {van["node_ms"]:.1f} / '
              f'{dge["node_ms"]:.1f}; by operator type:')
        for op in sorted(set(van['op_ms']) | set(dge['op_ms']),
                         key=lambda o: -max(van['op_ms'].get(o, 0), dge['op_ms'].get(o, 0))):
            print(f'{op:>20s} {van["op_ms"].get(op, 0.0):8.2f} {dge["op_ms"].get(op, 0.0):8.2f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
