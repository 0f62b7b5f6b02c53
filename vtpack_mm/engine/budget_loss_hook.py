"""BudgetLossHook: the DGE budget loss for any mmdet / mmseg / mmpretrain model."""
import functools

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..compat import allow_runner_checkpoints
from ..dge import find_backbone, last_complexity
from ..dge.complexity import budget_loss, check_budget
from ..registry import HOOKS


@HOOKS.register_module()
class BudgetLossHook(Hook):
    """Train with ``L = L_task + loss_weight * (beta - budget)^2``.

    beta is the DGE backbone's complexity ratio of the forward pass (dynamic / static cost,
    per image, averaged over the batch; differentiable through the routers' straight-through
    gates). The hook wraps the model's ``loss`` method for the duration of training, so it
    works for detectors, segmentors and classifiers without subclassing them, under DDP and
    AMP, and leaves checkpoints unchanged. ``loss_budget``, ``beta``, the target ``budget``
    and each stage's ratio (``beta_stage1``...) are logged with the other losses.

    Args:
        budget: target gamma in [0, 1]. Default 0.5.
        loss_weight: lambda >= 0. Default 1.0.
        warmup_iters: iterations over which the target falls linearly from 1.0 to
            ``budget``; 0 = no warm-up. Default 0.
        check_finite: stop training with an error naming the loss term when any loss is
            NaN or infinite. Default True.
    """

    priority = 'NORMAL'

    def __init__(self, budget: float = 0.5, loss_weight: float = 1.0, warmup_iters: int = 0,
                 check_finite: bool = True):
        check_budget(budget, loss_weight)
        if int(warmup_iters) < 0:
            raise ValueError(f'warmup_iters must be >= 0, got {warmup_iters}')
        self.budget = float(budget)
        self.loss_weight = float(loss_weight)
        self.warmup_iters = int(warmup_iters)
        self.check_finite = check_finite
        self._model = None
        self._backbone = None
        self._iter = 0
        allow_runner_checkpoints()

    def target(self, it: int) -> float:
        """gamma at iteration ``it`` (linear warm-up from 1.0)."""
        if self.warmup_iters <= 0 or it >= self.warmup_iters:
            return self.budget
        return 1.0 - (1.0 - self.budget) * it / self.warmup_iters

    def _losses_with_budget(self, orig_loss, *args, **kwargs):
        losses = orig_loss(*args, **kwargs)
        meter = last_complexity(self._backbone)
        ratio = meter.ratio()
        gamma = self.target(self._iter)
        losses['loss_budget'] = budget_loss(ratio, gamma, self.loss_weight)
        losses['beta'] = ratio.detach().float().mean()
        losses['budget'] = ratio.new_tensor(gamma)
        for name, r in meter.group_ratios().items():
            losses[f'beta_{name}'] = r.detach().to(ratio.device)
        if self.check_finite:
            for name, value in losses.items():
                values = value if isinstance(value, (list, tuple)) else [value]
                for v in values:
                    if torch.is_tensor(v) and not torch.isfinite(v).all():
                        raise FloatingPointError(
                            f'{name} is {v.detach().flatten()[:4].tolist()} at iteration '
                            f'{self._iter}: training stopped (lower the learning rate, or check '
                            f'the data of this iteration)')
        return losses

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._backbone = find_backbone(model, with_dge=True, who='BudgetLossHook')
        if getattr(vars(model).get('loss'), 'adds_budget_loss', False):
            raise RuntimeError('the model already has a budget loss; is BudgetLossHook '
                               'in custom_hooks twice?')
        wrapped = functools.partial(self._losses_with_budget, model.loss)
        wrapped.adds_budget_loss = True
        model.loss = wrapped
        self._model = model

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._iter = runner.iter

    def after_train(self, runner) -> None:
        if self._model is not None and 'loss' in vars(self._model):
            del self._model.loss
        self._model = None
