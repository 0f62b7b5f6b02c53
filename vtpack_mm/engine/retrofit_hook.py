"""RetrofitHook: make a vanilla checkpoint dynamic by distilling it into its DGE version."""
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from ..compat import allow_runner_checkpoints
from ..dge import find_backbone
from ..registry import HOOKS, MODELS

SCOPES = ('routers', 'routers_norms', 'backbone')


def feature_distill_loss(student: List[Tensor], teacher: List[Tensor]) -> Tensor:
    """Mean over output levels of ``|s - t|^2 / |t|^2`` (each level's squared error relative
    to the teacher's mean square, so levels of any scale weigh the same)."""
    if len(student) != len(teacher):
        raise ValueError(f'student has {len(student)} outputs, teacher {len(teacher)}')
    losses = []
    for s, t in zip(student, teacher):
        if s.shape != t.shape:
            raise ValueError(f'student output {tuple(s.shape)} vs teacher {tuple(t.shape)}')
        t = t.detach().float()
        losses.append((s.float() - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12))
    return torch.stack(losses).mean()


def trainable_parameters(backbone: nn.Module, scope: str):
    """Names of the backbone parameters that train under ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')
    norms = {f'{name}.{p}' for name, m in backbone.named_modules()
             if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm))
             for p, _ in m.named_parameters(recurse=False)}
    names = []
    for name, _ in backbone.named_parameters():
        if scope == 'backbone' or '.dge.router.' in name or \
                (scope == 'routers_norms' and name in norms):
            names.append(name)
    return names


@HOOKS.register_module()
class RetrofitHook(Hook):
    """Train a DGE model to reproduce a frozen vanilla teacher: no labels needed.

    The model's ``loss`` is replaced, for the duration of training, by a feature
    distillation loss between its DGE backbone's outputs and those of a frozen vanilla copy
    of the same backbone (the config's backbone with ``dge_cfg=None``) loaded from
    ``teacher_checkpoint`` (:func:`feature_distill_loss`, per output level). Add a
    :class:`BudgetLossHook` after it to pull the complexity ratio to the budget. Only
    the backbone runs: necks and heads keep the weights they were loaded with, and the data
    samples' labels are never read. The teacher lives in the hook, so checkpoints hold the
    DGE model alone: an ordinary DGE checkpoint, for ``tools/test.py`` and fine-tuning.

    Args:
        teacher_checkpoint: the vanilla weights (any layout the backbone loads; a whole
            detector, segmentor or classifier, or a backbone).
        scope: what trains: 'routers' (default; the backbone computes the vanilla function
            wherever the finest granularity is chosen), 'routers_norms' (routers and the
            backbone's norm layers) or 'backbone' (the whole backbone).
        loss_weight: weight of the distillation loss. Default 1.0.
    """

    priority = 'ABOVE_NORMAL'  # wraps loss() before BudgetLossHook adds its term

    def __init__(self, teacher_checkpoint: str, scope: str = 'routers',
                 loss_weight: float = 1.0):
        if scope not in SCOPES:
            raise ValueError(f'RetrofitHook: scope must be one of {SCOPES}, got {scope!r}')
        if not loss_weight > 0:
            raise ValueError(f'RetrofitHook: loss_weight must be > 0, got {loss_weight}')
        self.teacher_checkpoint = teacher_checkpoint
        self.scope = scope
        self.loss_weight = float(loss_weight)
        self.teacher: Optional[nn.Module] = None
        self._model = None
        self._backbone = None
        allow_runner_checkpoints()

    def build_teacher(self, backbone_cfg: dict, device) -> nn.Module:
        cfg = dict(backbone_cfg)
        cfg.update(dge_cfg=None, init_cfg=None, frozen_stages=-1, with_cp=False)
        teacher = MODELS.build(cfg)
        teacher.load_pretrained(self.teacher_checkpoint)
        teacher.requires_grad_(False)
        return teacher.to(device).eval()

    def _distill(self, *args, **kwargs):
        inputs = kwargs.get('inputs', args[0] if args else None)
        student = self._backbone(inputs)
        with torch.no_grad():
            teacher = self.teacher(inputs)
        return dict(loss_distill=self.loss_weight * feature_distill_loss(student, teacher))

    def before_train(self, runner) -> None:
        if is_model_wrapper(runner.model) and \
                getattr(runner.model, 'find_unused_parameters', True) is False:
            raise RuntimeError('RetrofitHook trains part of the model only: distributed '
                               'training needs model_wrapper_cfg=dict(type='
                               "'MMDistributedDataParallel', find_unused_parameters=True) "
                               '(tools/retrofit.py sets it)')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._backbone = find_backbone(model, with_dge=True, who='RetrofitHook')
        prefix = next(n for n, m in model.named_modules() if m is self._backbone)
        device = next(model.parameters()).device
        self.teacher = self.build_teacher(runner.cfg.model.backbone, device)
        trainable = set(trainable_parameters(self._backbone, self.scope))
        for name, p in model.named_parameters():
            local = name[len(prefix) + 1:] if prefix and name.startswith(prefix + '.') else None
            p.requires_grad_(local in trainable)
        print_log(f'RetrofitHook: teacher {type(self.teacher).__name__} from '
                  f'{self.teacher_checkpoint}; training {len(trainable)} backbone tensors '
                  f'({self.scope}), everything else frozen', logger='current')
        if 'loss' in vars(model):
            raise RuntimeError('the model already has a wrapped loss(); RetrofitHook must '
                               'wrap it first (it runs at ABOVE_NORMAL priority)')
        model.loss = self._distill
        self._model = model

    def after_train(self, runner) -> None:
        if self._model is not None and 'loss' in vars(self._model):
            del self._model.loss
        self._model = None
        self.teacher = None
