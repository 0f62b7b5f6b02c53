"""vtpack_mm: Dynamic Grained Encoder backbones for mmdet, mmsegmentation and mmpretrain."""
from .compat import allow_runner_checkpoints
from .version import __version__

allow_runner_checkpoints()

from . import dge, engine, models  # noqa: E402,F401
from .engine import BudgetLossHook  # noqa: E402,F401
from .models import DPVT, PVT, DeiT, MiT, PVTv2  # noqa: E402,F401
from .registry import HOOKS, MODELS  # noqa: E402,F401

__all__ = ['__version__', 'MODELS', 'HOOKS', 'PVT', 'DPVT', 'DeiT', 'PVTv2', 'MiT',
           'BudgetLossHook']
