from .gate_maps import (GATE_COLOURS, draw_gates, gate_figure, gate_overlay, gate_panel,
                        legend, stage_betas)

__all__ = ['GATE_COLOURS', 'draw_gates', 'gate_figure', 'gate_overlay', 'gate_panel', 'legend',
           'stage_betas']
