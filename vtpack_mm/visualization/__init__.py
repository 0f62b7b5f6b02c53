from .gate_maps import GATE_COLOURS, gate_overlay, legend, stage_choice_maps

__all__ = ['GATE_COLOURS', 'gate_overlay', 'legend', 'stage_choice_maps']
