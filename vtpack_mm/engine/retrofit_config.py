"""The training config of a retrofit: a vanilla config's model made dynamic and distilled."""
from typing import Optional, Sequence

from mmengine.config import Config

from ..checkpoint import find_prefix, load_state
from ..native import translate_model_config
from .retrofit_hook import SCOPES

HOOK_TYPES = ('BudgetLossHook', 'RetrofitHook')


def holds_whole_model(checkpoint: str) -> bool:
    """Whether a checkpoint holds a whole model (``backbone.`` keys) or a backbone alone."""
    return find_prefix(load_state(checkpoint)).endswith('backbone.')


def retrofit_config(cfg: Config, checkpoint: str, budget: float = 0.5, scope: str = 'routers',
                    iters: int = 200, lr: float = 1e-3, budget_weight: float = 2.0,
                    warmup_iters: Optional[int] = None, distill_weight: float = 1.0,
                    granularities: Optional[Sequence[int]] = None,
                    train_mode: Optional[str] = None) -> Config:
    """A copy of ``cfg`` that turns the vanilla weights ``checkpoint`` into a DGE model.

    A native backbone (mmdet's PVT v1/v2, mmseg's MiT, mmpretrain's VisionTransformer) is
    first translated into its vtpack_mm equivalent
    (:func:`~vtpack_mm.native.translate_model_config`), which loads the native
    checkpoint as it is; any other type is refused with the supported ones listed.

    The backbone gets ``dge_cfg`` (kept if the config has one; ``granularities`` and
    ``train_mode`` override it) and loads ``checkpoint`` (``init_cfg``; the routers keep
    their fresh, finest-everywhere initialisation); when the checkpoint is a whole model,
    ``load_from`` gives the neck and heads their weights too. Training for
    ``iters`` iterations minimises the :class:`RetrofitHook` distillation loss plus the
    :class:`BudgetLossHook` budget term towards ``budget`` (warmed up from 1.0 over
    ``warmup_iters``, default a quarter of the run). Only ``scope`` trains. The rest of the
    config (data, evaluation, runtime) is kept.
    """
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')
    if int(iters) < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    # a native backbone (mmdet's PVT, mmseg's MiT, mmpretrain's ViT...) becomes ours; any
    # other type is refused with the supported ones listed
    cfg = translate_model_config(cfg)
    backbone = cfg.model.backbone
    dge = dict(backbone.get('dge_cfg') or dict(granularities=(1, 2, 4), train_mode='dense'))
    if granularities:
        dge['granularities'] = tuple(int(g) for g in granularities)
    if train_mode:
        dge['train_mode'] = train_mode
    backbone.dge_cfg = dge
    # the teacher runs in eval mode: no stochastic depth or dropout in the student either,
    # or the target would move with every draw
    backbone.update(drop_path_rate=0.0, drop_rate=0.0, attn_drop_rate=0.0)
    # the backbone loads the vanilla weights itself (any layout, prefix found, routers
    # alone missing); a whole model's checkpoint also gives the neck and heads
    backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    cfg.load_from = checkpoint if holds_whole_model(checkpoint) else None
    cfg.resume = False
    hooks = [h for h in cfg.get('custom_hooks', []) or []
             if str(h.get('type', '')).split('.')[-1] not in HOOK_TYPES]
    warmup = max(1, int(iters) // 4) if warmup_iters is None else int(warmup_iters)
    cfg.custom_hooks = hooks + [
        dict(type='vtpack_mm.RetrofitHook', teacher_checkpoint=checkpoint, scope=scope,
             loss_weight=distill_weight),
        dict(type='vtpack_mm.BudgetLossHook', budget=budget, loss_weight=budget_weight,
             warmup_iters=warmup)]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=int(iters),
                         val_interval=int(iters))
    cfg.optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05),
        paramwise_cfg=dict(custom_keys={'.router.': dict(lr_mult=10.0, decay_mult=0.0)}),
        clip_grad=dict(max_norm=10.0))
    warm = max(1, int(iters) // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warm)]
    if int(iters) > warm:  # (a one-iteration run is all warm-up)
        cfg.param_scheduler.append(
            dict(type='CosineAnnealingLR', by_epoch=False, begin=warm, end=int(iters),
                 eta_min=lr * 0.01))
    cfg.default_hooks = dict(cfg.get('default_hooks', {}) or {})
    cfg.default_hooks['checkpoint'] = dict(type='CheckpointHook', by_epoch=False,
                                           interval=max(1, int(iters) // 2),
                                           max_keep_ckpts=2, save_last=True)
    cfg.log_processor = dict(cfg.get('log_processor', {}) or {}, by_epoch=False)
    # necks and heads get no gradient in a retrofit: DDP must not wait for them
    cfg.model_wrapper_cfg = dict(cfg.get('model_wrapper_cfg', None) or
                                 dict(type='MMDistributedDataParallel', broadcast_buffers=False),
                                 find_unused_parameters=True)
    return cfg
