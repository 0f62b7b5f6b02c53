"""A DGE backbone on another device against the same backbone on CPU, in float64.

    python tools/analysis_tools/check_device.py --device cuda [--model pvt dpvt deit]
    python tools/analysis_tools/check_device.py --device cpu --as-cuda   # no GPU: the
        # branches CUDA tensors take (references, padded attention), run on CPU

The first check of a machine with a GPU, after the kernels' own comparisons
(``tests/test_ops/triton_cases.py``): the same weights and images, the routers random
(so every granularity is chosen), in float64 so that the two runs agree to rounding. For
each model it compares

- the eval outputs and the routing (every region's choice) of the device run with the CPU
  run (compiled CPU kernels);
- one dense-mode and one sparse-mode training step (outputs, choices, beta and every
  parameter's gradient). A device draws from its own generator, so both runs take their
  routers' Gumbel noise from the CPU generator, seeded alike, and the models have no
  stochastic depth.

With ``VTPACK_MM_TRITON=1`` CUDA tensors take the Triton kernels, else the PyTorch
references. Exits with status 1 when a comparison fails; prints one line per comparison.
"""
import argparse
import copy
import sys
from unittest import mock

import torch

import vtpack_mm
from vtpack_mm.analysis import randomize_routers
from vtpack_mm.dge import budget_loss, encoder, last_complexity
from vtpack_mm.dge.router import gumbel_decision
from vtpack_mm.ops import take_cuda_branches

MODELS = dict(pvt=vtpack_mm.PVT, dpvt=vtpack_mm.DPVT, deit=vtpack_mm.DeiT)
TOL = dict(rtol=1e-9, atol=1e-9)


def build(name: str, train_mode: str):
    cls = MODELS[name]
    kw = dict(arch=dict(embed_dims=64, depth=2, num_heads=2, mlp_ratio=2), img_size=96) \
        if name == 'deit' else dict(arch='tiny')
    torch.manual_seed(0)
    model = cls(**kw, dge_cfg=dict(granularities=(0, 1, 2, 4), train_mode=train_mode))
    model.init_weights()
    randomize_routers(model)
    return model.double()


def gumbel_from_cpu(logits, tau, override=None):
    """The routers' decision with the noise drawn by the CPU generator, as a CPU pass
    draws it, whatever the logits' device."""
    noise = torch.empty(logits.shape, dtype=logits.dtype).exponential_()
    return gumbel_decision(logits, tau, override, -noise.log().to(logits.device))


def run(model, x, device, train: bool, seed: int = 3):
    """Outputs, choices, beta and (train) gradients of one pass on ``device``, as CPU
    tensors."""
    model = copy.deepcopy(model).to(device).train(train)
    x = x.to(device)
    torch.manual_seed(seed)
    with torch.set_grad_enabled(train), mock.patch.object(encoder, 'gumbel_decision',
                                                          gumbel_from_cpu):
        outs = model(x)
        ratio = last_complexity(model).ratio()
        res = dict(outputs=[o.detach().cpu() for o in outs], beta=ratio.detach().cpu(),
                   choices=[r.choice.cpu() for r in model.last_complexity.routing])
        if train:
            loss = sum(o.mean() for o in outs) + budget_loss(ratio, 0.5)
            loss.backward()
            res['grads'] = {k: p.grad.cpu() for k, p in model.named_parameters()
                            if p.grad is not None}
    return res


def compare(name: str, got: dict, want: dict) -> list:
    """(what, ok, detail) of every field."""
    rows = []
    for key in want:
        a, b = got[key], want[key]
        worst, bad = 0.0, []
        if isinstance(b, dict):
            if set(a) != set(b):
                bad.append(f'keys differ: {sorted(set(a) ^ set(b))}')
            pairs = [(f'{key}[{k}]', a[k], v) for k, v in b.items() if k in a]
        elif isinstance(b, list):
            if len(a) != len(b):
                bad.append(f'{len(a)} tensors against {len(b)}')
            pairs = [(f'{key}[{i}]', u, v) for i, (u, v) in enumerate(zip(a, b))]
        else:
            pairs = [(key, a, b)]
        for what, u, v in pairs:
            if u.shape != v.shape:
                bad.append(f'{what}: shape {tuple(u.shape)} against {tuple(v.shape)}')
                continue
            if v.dtype in (torch.long, torch.bool):
                if not torch.equal(u, v):
                    bad.append(f'{what}: {int((u != v).sum())} of {v.numel()} differ')
                continue
            diff = float((u - v).abs().max()) if v.numel() else 0.0
            if not torch.allclose(u, v, **TOL):
                bad.append(f'{what}: max difference {diff:.3g}')
            worst = max(worst, diff)
        rows.append((f'{name} {key}', not bad, '; '.join(bad[:3]) or f'max difference {worst:.3g}'))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--model', nargs='+', choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument('--size', type=int, nargs=2, default=[96, 128])
    parser.add_argument('--as-cuda', action='store_true',
                        help='the device run takes the branches of CUDA tensors (on CPU)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no GPU')
    x = torch.randn(2, 3, *args.size, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    rows = []
    for name in args.model:
        for mode, train in (('eval', False), ('dense', True), ('sparse', True)):
            model = build(name, 'sparse' if mode == 'sparse' else 'dense')
            want = run(model, x, torch.device('cpu'), train)
            with take_cuda_branches(args.as_cuda):
                got = run(model, x, device, train)
            rows += compare(f'{name} {mode}', got, want)
    for what, ok, detail in rows:
        print(f'{"ok  " if ok else "FAIL"} {what}: {detail}')
    failed = sum(not ok for _, ok, _ in rows)
    print(f'{device} against cpu, float64: {len(rows) - failed} of {len(rows)} comparisons '
          'agree' + (f', {failed} FAIL' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
