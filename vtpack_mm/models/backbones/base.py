"""What every vtpack_mm backbone shares: the OpenMMLab backbone contract and DGE plumbing."""
import math
from typing import Dict, Iterable, Optional, Sequence

from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ...dge import ComplexityMeter, RoutedBackbone, set_logit_shift
from ...checkpoint import find_prefix, load_state, take_prefix
from ...ops import tracing
from .state_dict import fit_state_dict, log_dropped, mark_resized


def check_arch(arch, arch_zoo: Dict[str, dict], required: Sequence[str], name: str) -> dict:
    """Resolve an arch name or dict against a preset table, with errors naming the problem."""
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(f'{name}: unknown arch {arch!r}; choose from {sorted(arch_zoo)} '
                             f'or give a dict with keys {list(required)}')
        return dict(arch_zoo[key])
    if not isinstance(arch, dict):
        raise TypeError(f'{name}: arch must be a name or a dict, got {type(arch).__name__}')
    missing = [k for k in required if k not in arch]
    if missing:
        raise ValueError(f'{name}: custom arch lacks {missing}')
    return dict(arch)


class TransformerBackbone(BaseModule, RoutedBackbone):
    """Base of the vtpack_mm backbones (PVT, DPVT, DeiT), vanilla or with DGE blocks.

    It holds the OpenMMLab backbone contract: ``frozen_stages`` (units 0..k frozen; a
    subclass says what a unit is through :meth:`frozen_modules`), ``norm_eval``,
    ``with_cp`` (activation checkpointing of every layer, :meth:`run_block`) and
    ``out_indices`` validation; weight init and loading (:meth:`init_weights`, a
    load-state-dict pre-hook that converts foreign layouts and resizes position tables);
    and the cost record of the last forward pass (``last_complexity``, a
    :class:`~vtpack_mm.dge.ComplexityMeter`).
    """

    def __init__(self, frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.last_complexity: Optional[ComplexityMeter] = None
        self._register_load_state_dict_pre_hook(self._fit_on_load)

    # --- configuration helpers ---------------------------------------------------------
    @staticmethod
    def check_out_indices(out_indices, num_outputs: int, name: str):
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise TypeError(f'{name}: out_indices must be an int or a non-empty sequence, '
                            f'got {out_indices!r}')
        result = []
        for i in out_indices:
            j = int(i) + num_outputs if int(i) < 0 else int(i)
            if not 0 <= j < num_outputs:
                raise ValueError(f'{name}: out_indices {list(out_indices)} out of range for '
                                 f'{num_outputs} outputs')
            result.append(j)
        return tuple(result)

    # --- forward helpers ---------------------------------------------------------------
    def check_images(self, x: Tensor) -> None:
        """The input must be a non-empty batch of images (B, C, H, W); anything else gets
        an error that names it (instead of one from deep inside a layer)."""
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f'{name}: expects a batch of images (B, C, H, W), got a tensor '
                             f'of shape {tuple(x.shape)}')
        if not tracing() and x.shape[0] == 0:  # (a tracer's sizes are tensors)
            raise ValueError(f'{name}: the batch is empty (input shape {tuple(x.shape)})')

    @staticmethod
    def output(x: Tensor, hw, num_extra: int, out_type: str,
               avg_norm: Optional[nn.Module] = None) -> Tensor:
        """What the tokens ``x`` (B, E + H*W, C) of an output layer or stage become:
        'raw' as they are, 'cls_token' (B, C) the first token, 'avg_featmap' (B, C) the
        mean of the map tokens (then ``avg_norm``, if given), 'featmap' the map
        (B, C, H, W)."""
        if out_type == 'raw':
            return x
        if out_type == 'cls_token':
            return x[:, 0]
        tokens = x[:, num_extra:]
        if out_type == 'avg_featmap':
            avg = tokens.mean(1)
            return avg_norm(avg) if avg_norm is not None else avg
        B, _, C = tokens.shape
        return tokens.transpose(1, 2).reshape(B, C, hw[0], hw[1]).contiguous()

    def run_block(self, block, x: Tensor, hw, meter: ComplexityMeter, group: str,
                  layer: str) -> Tensor:
        if self.with_cp and x.requires_grad:
            x, cost = checkpoint(block, x, hw, use_reentrant=False)
        else:
            x, cost = block(x, hw)
        meter.add(group, cost.static, cost.dynamic, layer=layer,
                  routing=cost.routing.regions if cost.routing is not None else None)
        return x

    # --- training mode, freezing ---------------------------------------------------------
    def frozen_modules(self, stage: int) -> Iterable[nn.Module]:
        raise NotImplementedError

    def _freeze_stages(self):
        for i in range(self.frozen_stages + 1):
            for m in self.frozen_modules(i):
                if isinstance(m, nn.Parameter):
                    m.requires_grad = False
                    continue
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # --- DGE access ----------------------------------------------------------------------
    def set_logit_shift(self, shift: float):
        """Set the budget knob of every DGE router (:func:`vtpack_mm.dge.set_logit_shift`)."""
        set_logit_shift(self, shift)

    # --- weights -------------------------------------------------------------------------
    def init_weights(self):
        """Initialise as configured, then let every submodule with its own scheme apply it.

        Without ``init_cfg``, and before loading a ``Pretrained`` checkpoint (which may
        lack the routers), the backbone's default scheme runs (:meth:`default_init`);
        any other ``init_cfg`` runs through mmengine. In every case the submodules'
        own ``init_weights`` follow (DGE routers start at the finest granularity,
        deformable offsets spread around their point), so no init type skips them.
        """
        cfg = self.init_cfg
        pretrained = isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
        if cfg is None or pretrained:
            self.default_init()
            self.init_cfg = None  # mmengine then only visits the submodules
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfg
        if pretrained:
            self.load_pretrained(cfg['checkpoint'], cfg.get('prefix'))

    def default_init(self):
        """Truncated-normal linear layers and position tables, unit LayerNorms, He-normal
        convolutions (fan-out)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, 1.0, 0.0)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for p in self.position_tables():
            trunc_normal_(p, std=.02)

    def position_tables(self) -> Iterable[nn.Parameter]:
        return []

    def convert_state_dict(self, state_dict: dict) -> dict:
        """Hook for subclasses: turn a foreign checkpoint layout into ours (default: as is)."""
        return state_dict

    def table_specs(self):
        """(key, parameter, grid (h, w), extra tokens, interpolation) of each position
        table, so a checkpoint's table of another size can be resized on load."""
        return []

    @staticmethod
    def check_common(name: str, out_type: str, out_types, with_cls_token: bool,
                     frozen_stages: int, num_units: int):
        """``out_type`` one of ``out_types`` ('cls_token' only with a class token) and
        ``frozen_stages`` in [-1, num_units)."""
        if out_type not in out_types:
            raise ValueError(f'{name}: out_type must be one of {out_types}, got {out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError(f"{name}: out_type='cls_token' needs with_cls_token=True")
        if not -1 <= frozen_stages < num_units:
            raise ValueError(f'{name}: frozen_stages={frozen_stages} out of range [-1, '
                             f'{num_units - 1}]')

    def _fit_on_load(self, state_dict, prefix, *args):
        """Load-state-dict pre-hook: fit this backbone's part of ``state_dict`` (keys under
        ``prefix``) in place, so every loading route converts layouts, drops
        classifier-only entries and resizes position tables."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        if not keys:
            return
        sub = {k[len(prefix):]: state_dict.pop(k) for k in keys}
        shapes = {k: v.shape for k, v in sub.items()}
        sub, dropped = fit_state_dict(self, sub)
        log_dropped(self, dropped, f'weights under {prefix!r}' if prefix else 'weights')
        state_dict.update({prefix + k: v for k, v in sub.items()})
        mark_resized([(param, shapes[key]) for key, param, *_ in self.table_specs()
                      if key in shapes and shapes[key] != param.shape])

    def load_pretrained(self, filename: str, prefix: Optional[str] = None):
        """Load backbone weights, refusing any key or shape that does not fit.

        ``prefix`` (e.g. 'backbone.' for a whole detector or classifier; a missing final
        dot is added) is found when not given. Classifier-only entries this backbone lacks
        are dropped and logged; only the DGE routers may be missing (a vanilla checkpoint
        in a DGE backbone): they keep their fresh initialisation, which picks the finest
        granularity everywhere.
        """
        state = load_state(filename)
        if prefix is None:
            prefix = find_prefix(state)
        elif prefix and not prefix.endswith('.'):
            prefix += '.'  # 'backbone', as mmengine's Pretrained init and mmpretrain write it
        groups = {}  # what lies outside the prefix (a whole model's neck, heads), by module
        for k in state:
            if not k.startswith(prefix):
                groups[k.split('.')[0]] = groups.get(k.split('.')[0], 0) + 1
        outside = [f'{g}.* ({n} keys)' for g, n in sorted(groups.items())]
        state, dropped = fit_state_dict(self, take_prefix(state, prefix, filename))
        log_dropped(self, outside + dropped, filename)
        own = self.state_dict()
        unexpected = sorted(set(state) - set(own))
        missing = sorted(set(own) - set(state))
        router_missing = [k for k in missing if '.dge.router.' in k]
        missing = [k for k in missing if '.dge.router.' not in k]
        shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
        problems = []
        if unexpected:
            problems.append(f'unexpected keys ({len(unexpected)}): {unexpected[:8]}')
        if missing:
            problems.append(f'missing keys ({len(missing)}): {missing[:8]}')
        if shapes:
            problems.append(f'shape mismatches ({len(shapes)}): {shapes[:8]}')
        if problems:
            raise ValueError(f'checkpoint {filename} does not fit {type(self).__name__} '
                             f'(arch as configured): ' + '; '.join(problems))
        self.load_state_dict(state, strict=False)
        if router_missing:
            print_log(f'{type(self).__name__}: loaded {filename}; {len(router_missing)} DGE '
                      f'router keys are not in it and keep their initialisation (finest '
                      f'granularity everywhere): {router_missing[:4]}...', logger='current')
        return router_missing
