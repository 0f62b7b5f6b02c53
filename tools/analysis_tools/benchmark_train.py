"""Training-step cost of a backbone: vanilla vs DGE dense mode vs DGE sparse mode.

    python tools/analysis_tools/benchmark_train.py [--model pvt] [--arch small]
        [--size 256 256] [--batch 4] [--threads 2] [--target-beta 0.5]
        [--warmup 1] [--repeats 5] [--optimizer fused] [--profile] [--out results.json]

A step is a forward pass on random images, a loss (the outputs' mean, plus the budget
loss for DGE), the backward pass and an AdamW update. --optimizer picks PyTorch's
implementation of AdamW: 'fused' (the default), 'foreach', or 'loop'
(one parameter at a time, what PyTorch runs on CPU unless told otherwise). The update
costs every variant the same and the FLOPs floor below leaves it out. The three variants
hold the same weights. The routers get random weights and a logit shift calibrated in
eval mode so that the images reach --target-beta; training adds Gumbel noise, so the beta
of the timed steps is measured and reported.

Time: the variants' steps timed round-robin; medians and paired ratios (vanilla / variant).
FLOPs floor: the vanilla step's FLOPs over the variant's: the speed-up the step would have
if time followed FLOPs. A step's FLOPs are its forward pass (mmengine's count as it runs in
training) plus a backward pass of twice the forward's cost over what runs with autograd.
Sparse mode computes the chosen granularity of every region. Dense mode computes the
chosen granularity with autograd and the others without (the hard gate gives them no
gradient), so its backward pass is sparse mode's: F_dense + 2 F_sparse against
3 F_vanilla.
Saved activations: the bytes autograd keeps for the backward pass of one step's forward
(each storage once; parameters left out), independent of the allocator
(:func:`vtpack_mm.analysis.saved_for_backward`).
Peak memory: each variant runs in a process of its own; after one step (which creates the
optimizer's moments), the growth of its peak resident set (VmHWM) over a few more steps
above its resident set before them: activations, gradients and workspace. glibc's mmap
threshold is fixed so that freed tensors go back to the system (Linux only).
--profile: PyTorch's profiler over two more steps of each variant: the time of the
forward pass, the backward pass and the optimizer step, DGE's own ops, and the largest
operators by their own time.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import vtpack_mm
from vtpack_mm.analysis import (calibrate_logit_shift, randomize_routers,
                                saved_for_backward)
from vtpack_mm.analysis.flops import count_flops
from vtpack_mm.analysis.latency import (paired_speedups, stats_cells, summarize,
                                        time_variants)
from vtpack_mm.dge import budget_loss, dge_encoders, fold_logit_shift, last_complexity

MODELS = dict(pvt=vtpack_mm.PVT, dpvt=vtpack_mm.DPVT, deit=vtpack_mm.DeiT)
VARIANTS = ('vanilla', 'dense', 'sparse')
OPTIMIZERS = dict(fused=dict(fused=True), foreach=dict(foreach=True),
                  loop=dict(foreach=False, fused=False))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=sorted(MODELS), default='pvt')
    parser.add_argument('--arch', default='small')
    parser.add_argument('--granularities', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--size', type=int, nargs=2, default=[256, 256])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--threads', type=int, help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--target-beta', type=float, default=0.5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--optimizer', choices=OPTIMIZERS, default='fused',
                        help="AdamW's implementation (default fused)")
    parser.add_argument('--memory-steps', type=int, default=2,
                        help='steps run in each memory-measuring process')
    parser.add_argument('--no-memory', action='store_true', help='skip the memory processes')
    parser.add_argument('--memory-of', choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument('--profile', action='store_true',
                        help='add PyTorch profiles: phase times and the largest operators')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def build(args):
    """{variant: backbone in train mode}, the same weights, and the calibrated shift."""
    cls = MODELS[args.model]
    torch.manual_seed(0)
    vanilla = cls(arch=args.arch, drop_path_rate=0.0)
    vanilla.init_weights()
    models = dict(vanilla=vanilla)
    for mode in VARIANTS[1:]:
        m = cls(arch=args.arch, drop_path_rate=0.0,
                dge_cfg=dict(granularities=tuple(args.granularities), train_mode=mode))
        m.load_state_dict(vanilla.state_dict(), strict=False)
        models[mode] = m
    randomize_routers(models['dense'])
    models['sparse'].load_state_dict(models['dense'].state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, *args.size, generator=g)
    shift, _ = calibrate_logit_shift(models['dense'], [x], args.target_beta, tol=0.01)
    for m in models.values():  # training ignores the knob: the shift goes into the biases
        fold_logit_shift(m, shift)
        m.set_logit_shift(0.0)
    for m in models.values():
        m.train()
    return models, x, shift


def loss_of(model, x, target):
    """The benchmark's loss: the outputs' mean, plus the budget loss for DGE."""
    loss = sum(o.float().mean() for o in model(x))
    if dge_encoders(model):
        loss = loss + budget_loss(last_complexity(model).ratio(), target)
    return loss


def step_flops_of(forward: dict) -> dict:
    """A step's FLOPs per variant from the training forward counts of the same weights and
    noise: the forward pass, then a backward pass of twice the forward's cost over what ran
    with autograd. In dense mode that is the chosen queries alone, which are the sparse
    variant's (the others run without autograd)."""
    return dict(vanilla=3 * forward['vanilla'], sparse=3 * forward['sparse'],
                dense=forward['dense'] + 2 * forward['sparse'])


PHASES = ('forward', 'backward', 'optimizer')


def stepper(model, x, target, optimizer='fused'):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, **OPTIMIZERS[optimizer])

    def step():
        # the labels name the phases in a profile (--profile); outside one they cost nothing
        opt.zero_grad(set_to_none=True)
        with record_function('forward'):
            loss = loss_of(model, x, target)
        with record_function('backward'):
            loss.backward()
        with record_function('optimizer'):
            opt.step()
    return step


def profile_steps(step, steps=2, top=12):
    """PyTorch's profile of ``steps`` steps, per step: each phase's time (ms) and the
    ``top`` operators by their own time (ms), DGE's own kernels and Functions named
    ``vtpack_mm::*`` / ``Grained*``."""
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    phases = {p: by_name[p].cpu_time_total / steps / 1e3 for p in PHASES}
    ops = sorted((e for e in events if e.key not in PHASES), key=lambda e: -e.self_cpu_time_total)
    own = sum(e.self_cpu_time_total for e in events
              if e.key.startswith(('vtpack_mm::', 'Grained')))
    return dict(phase_ms=phases, dge_own_ms=own / steps / 1e3,
                top_ops_ms={e.key: e.self_cpu_time_total / steps / 1e3 for e in ops[:top]})


def rss_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure_memory(args):
    """In this process: the peak RSS growth (MiB) over ``--memory-steps`` steps of one
    variant."""
    models, x, _ = build(args)
    step = stepper(models[args.memory_of], x, args.target_beta, args.optimizer)
    models = {args.memory_of: models[args.memory_of]}  # drop the others before measuring
    step()  # the optimizer's moments exist from here on, in every variant alike
    before = rss_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    for _ in range(args.memory_steps):
        step()
    print(json.dumps(dict(peak_growth_mib=(rss_kib('VmHWM') - before) / 1024)))


def memory_in_subprocess(args, variant):
    cmd = [sys.executable, __file__, '--memory-of', variant, '--model', args.model, '--arch',
           args.arch, '--size', *map(str, args.size), '--batch', str(args.batch),
           '--target-beta', str(args.target_beta), '--memory-steps', str(args.memory_steps),
           '--granularities', *map(str, args.granularities), '--optimizer', args.optimizer]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='131072', MALLOC_TRIM_THRESHOLD_='131072')
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f'memory run of {variant} failed:\n{res.stderr[-2000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])['peak_growth_mib']


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        return measure_memory(args)
    models, x, shift = build(args)
    flops, choices = {}, {}
    for name, m in models.items():
        torch.manual_seed(2)
        flops[name] = count_flops(m, (x, ))  # with autograd on, as in training
        choices[name] = [r.choice for r in last_complexity(m).routing]
    if any(not torch.equal(a, b) for a, b in zip(choices['dense'], choices['sparse'])):
        raise RuntimeError('dense and sparse mode chose differently on the same weights and '
                           'noise: the dense step count below needs the same choices')
    step_flops = step_flops_of(flops)
    saved = {}  # activations autograd keeps (the peak RSS below also holds the allocator's)
    for name, m in models.items():
        torch.manual_seed(2)
        saved[name] = saved_for_backward(lambda: loss_of(m, x, args.target_beta),
                                         exclude=[*m.parameters(), *m.buffers()]) / 2**20
    steps = {name: stepper(m, x, args.target_beta, args.optimizer)
             for name, m in models.items()}
    times = time_variants(steps, args.warmup, args.repeats, grad=True, progress=True)
    betas = {}
    for name in VARIANTS[1:]:
        steps[name]()
        betas[name] = float(last_complexity(models[name]).ratio().detach().float().mean())
    stats = {k: summarize(v) for k, v in times.items()}
    paired = paired_speedups(times, 'vanilla')
    floor = {k: step_flops['vanilla'] / v for k, v in step_flops.items()}
    memory = {} if args.no_memory else {v: memory_in_subprocess(args, v) for v in VARIANTS}
    profiles = {v: profile_steps(steps[v]) for v in VARIANTS} if args.profile else {}
    results = dict(processor=platform.processor() or platform.machine(),
                   threads=torch.get_num_threads(), model=args.model, arch=args.arch,
                   size=args.size, batch=args.batch, optimizer=args.optimizer,
                   logit_shift=shift, train_beta=betas,
                   forward_flops=flops, step_flops=step_flops,
                   flops_floor_speedup=floor, speedup=paired,
                   peak_memory_growth_mib=memory, saved_activations_mib=saved, stats=stats,
                   times=times, profile=profiles)
    print(f'\n{args.model}-{args.arch} training step, batch {args.batch} at '
          f'{args.size[0]}x{args.size[1]}, {torch.get_num_threads()} threads, {args.optimizer} '
          f'AdamW; training beta '
          + ', '.join(f'{k} {v:.3f}' for k, v in betas.items()))
    print(f'{"variant":>8s} {"median s":>9s} {"q1..q3 s":>15s} {"speed-up":>9s} '
          f'{"FLOPs floor":>11s} {"of floor":>9s} {"peak MiB":>9s} {"saved MiB":>10s}')
    for name in VARIANTS:
        s = stats[name]
        mem = f'{memory[name]:9.0f}' if memory else f'{"-":>9s}'
        print(f'{name:>8s} {stats_cells(s)} '
              f'{paired[name]:8.2f}x {floor[name]:10.2f}x {paired[name] / floor[name]:8.1%} '
              f'{mem} {saved[name]:6.0f} ({saved[name] / saved["vanilla"]:.2f}x)')
    if profiles:
        print('\nprofile, ms per step: ' + ', '.join(
            f'{v} ' + ' / '.join(f'{p["phase_ms"][ph]:.0f}' for ph in PHASES) +
            f' (DGE own ops {p["dge_own_ms"]:.1f})' for v, p in profiles.items()) +
            ' (forward / backward / optimizer)')
        for v, p in profiles.items():
            print(f'{v}: ' + ', '.join(f'{k} {t:.1f}' for k, t in p['top_ops_ms'].items()))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
