from .budget_loss_hook import BudgetLossHook, find_dge_backbone

__all__ = ['BudgetLossHook', 'find_dge_backbone']
