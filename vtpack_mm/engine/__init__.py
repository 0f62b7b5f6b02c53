from .budget_loss_hook import BudgetLossHook
from .data_check import check_dataset_paths
from .gate_vis_hook import GateVisualizationHook
from .retrofit_hook import RetrofitHook, feature_distill_loss

__all__ = ['BudgetLossHook', 'GateVisualizationHook', 'RetrofitHook', 'feature_distill_loss', 'check_dataset_paths']
