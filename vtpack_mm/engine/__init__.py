from .budget_loss_hook import BudgetLossHook, find_dge_backbone
from .data_check import check_dataset_paths

__all__ = ['BudgetLossHook', 'find_dge_backbone', 'check_dataset_paths']
