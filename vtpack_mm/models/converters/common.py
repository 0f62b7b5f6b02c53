import re
from typing import Callable, Dict, List, Optional, Tuple

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
