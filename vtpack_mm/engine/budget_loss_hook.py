"""BudgetLossHook: the DGE budget loss for any mmdet / mmseg / mmpretrain model."""
import functools
import logging

import torch
from mmengine.dist import broadcast_object_list, get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..analysis.budget import calibrate_logit_shift, measure_beta
from ..compat import allow_runner_checkpoints
from ..dge import dge_encoders, find_backbone, fold_logit_shift, last_complexity, set_logit_shift
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
        calibrate: after the last training iteration (before that iteration's checkpoint
            is saved), find the router logit shift whose argmax beta on
            ``calibrate_batches`` training batches (in eval mode) is closest to ``budget``
            and fold it into the routers' gate biases (:func:`~vtpack_mm.dge.fold_logit_shift`):
            training samples gates while inference takes the argmax, whose beta drifts
            from the budget. The shift lives in the weights, so it travels with the
            checkpoint to every loading route (``init_cfg``, ``load_from``,
            ``tools/test.py``, the ONNX export) and a later fine-tune starts from it; the
            budget knob (``dge_cfg.logit_shift``) still applies on top. Default True.
        calibrate_batches: training batches the calibration measures beta on. Default 8.
            The calibration warns when it had to force the budget
            (:meth:`forced_budget`): a large shift overrides what the routers learnt
            (docs/get_started.md, the segmentation demo: the larger the shift, the lower
            the retrofit's mIoU).
    """

    priority = 'NORMAL'
    FAR_FROM_BUDGET = 0.1  # argmax beta before the shift, from the budget
    LARGE_SHIFT = 4.0  # logits: about the gap init_gate 0.95 puts between phi = 1 and the rest

    @classmethod
    def forced_budget(cls, beta_before: float, budget: float, shift: float) -> bool:
        """Whether a calibration forced the budget on routers that had not learnt it: they
        ended training more than ``FAR_FROM_BUDGET`` from it, or the shift that meets it is
        larger than ``LARGE_SHIFT``."""
        return abs(beta_before - budget) > cls.FAR_FROM_BUDGET or abs(shift) > cls.LARGE_SHIFT

    def __init__(self, budget: float = 0.5, loss_weight: float = 1.0, warmup_iters: int = 0,
                 check_finite: bool = True, calibrate: bool = True, calibrate_batches: int = 8):
        check_budget(budget, loss_weight)
        if int(warmup_iters) < 0:
            raise ValueError(f'warmup_iters must be >= 0, got {warmup_iters}')
        self.budget = float(budget)
        self.loss_weight = float(loss_weight)
        self.warmup_iters = int(warmup_iters)
        self.check_finite = check_finite
        if int(calibrate_batches) < 1:
            raise ValueError(f'calibrate_batches must be >= 1, got {calibrate_batches}')
        self.calibrate = bool(calibrate)
        self.calibrate_batches = int(calibrate_batches)
        self.calibration = None  # what the last calibration found (shift, betas)
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

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # at NORMAL priority this runs before CheckpointHook (VERY_LOW) saves the last
        # iteration: the calibrated weights are the ones saved
        if self.calibrate and self.is_last_train_iter(runner):
            self.calibration = self.calibrate_routers(runner)

    @torch.no_grad()
    def calibrate_routers(self, runner) -> dict:
        """Fold into the routers the shift whose argmax beta on training batches is closest
        to the budget (rank 0 measures; every rank folds the same shift)."""
        model = self._model
        backbone = self._backbone
        was_training = backbone.training
        knob = dge_encoders(backbone)[0].router.shift
        result = [None]
        if get_rank() == 0:
            images = []
            for i, batch in enumerate(runner.train_dataloader):
                if i >= self.calibrate_batches:
                    break
                images.append(model.data_preprocessor(batch, False)['inputs'])
            set_logit_shift(backbone, 0.0)
            before = measure_beta(backbone, images)
            shift, beta = calibrate_logit_shift(backbone, images, self.budget, tol=0.002)
            result = [dict(shift=float(shift), beta=float(beta), beta_before=float(before),
                           images=sum(len(x) for x in images))]
        broadcast_object_list(result)
        found = result[0]
        fold_logit_shift(backbone, found['shift'])
        set_logit_shift(backbone, knob)
        backbone.train(was_training)
        print_log(f'BudgetLossHook: calibrated the routers for inference on '
                  f'{found["images"]} training images: argmax beta {found["beta_before"]:.4f} '
                  f'-> {found["beta"]:.4f} (budget {self.budget}), logit shift '
                  f'{found["shift"]:+.4f} folded into the gate biases', logger='current')
        found['forced'] = self.forced_budget(found['beta_before'], self.budget, found['shift'])
        if found['forced']:
            print_log(f'BudgetLossHook: the routers ended training at argmax beta '
                      f'{found["beta_before"]:.3f} for the budget {self.budget}: the '
                      f'calibration forced it with a logit shift of {found["shift"]:+.2f}, '
                      f'which overrides what the routers learnt and can cost much accuracy. '
                      f'Train them to the budget: a larger loss_weight (tools/retrofit.py '
                      f'--budget-weight), more iterations, or another seed', logger='current',
                      level=logging.WARNING)
        return found

    def after_train(self, runner) -> None:
        if self._model is not None and 'loss' in vars(self._model):
            del self._model.loss
        self._model = None
