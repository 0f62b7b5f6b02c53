import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from torch import Tensor

Rule = Tuple[str, str]


def rename(state: Dict[str, Tensor], rules: List[Rule],
           drop: Optional[Callable[[str], bool]] = None) -> Dict[str, Tensor]:
    """Apply the first matching regex substitution of ``rules`` to every key.

    A key that no rule matches is an error (naming the key), so an unknown layout never
    loads half-converted.
    """
    out = {}
    for key, value in state.items():
        if drop is not None and drop(key):
            continue
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(f'no conversion rule for checkpoint key {key!r}')
    return out


def split_heads(state: Dict[str, Tensor], prefixes=('head.', 'head_dist.', 'fc_norm.')):
    """Split classifier-head keys off a state dict: (backbone part, head part)."""
    head = {k: v for k, v in state.items() if k.startswith(prefixes)}
    return {k: v for k, v in state.items() if k not in head}, head


# (what the layout is called, the key prefix that marks it, its conversion; None: ours)
Layout = Tuple[str, str, Optional[Callable[[Dict[str, Tensor]], Dict[str, Tensor]]]]


def convert_detected(state: Dict[str, Tensor], layouts: Sequence[Layout],
                     model: str) -> Dict[str, Tensor]:
    """Convert ``state`` by the first of ``layouts`` one of whose keys starts with its
    marker; a state dict that matches none is an error naming the layouts we read."""
    for _, marker, convert in layouts:
        if any(k.startswith(marker) for k in state):
            return state if convert is None else convert(state)
    known = ', '.join(f'{name} ({marker}*)' for name, marker, _ in layouts)
    raise KeyError(f'unrecognised {model} checkpoint layout (first keys: {list(state)[:4]}); '
                   f'expected {known} keys')
