from .budget_loss_hook import BudgetLossHook, find_dge_backbone
from .data_check import check_dataset_paths
from .gate_vis_hook import GateVisualizationHook
from .retrofit_hook import RetrofitHook, feature_distill_loss

__all__ = ['BudgetLossHook', 'GateVisualizationHook', 'RetrofitHook', 'feature_distill_loss',
           'find_dge_backbone', 'check_dataset_paths']
