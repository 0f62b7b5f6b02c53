"""saved_for_backward counts what autograd keeps, each storage once, parameters left out."""
import torch
from torch import nn

from vtpack_mm.analysis import saved_for_backward


def test_counts_each_saved_storage_once_without_parameters():
    lin = nn.Linear(4, 8)
    x = torch.randn(3, 4, requires_grad=True)

    def fn():
        h = lin(x)  # saves x (and the weight, a parameter)
        # gelu saves h; the product saves gelu(h) and h again (counted once)
        return torch.nn.functional.gelu(h) * h

    got = saved_for_backward(fn, exclude=lin.parameters())
    assert got == (3 * 4 + 3 * 8 + 3 * 8) * 4
    # with the parameters counted, the weight is in too (bias is not saved by addmm)
    assert saved_for_backward(fn) == got + 8 * 4 * 4


def test_a_saved_view_keeps_its_whole_storage():
    x = torch.randn(10, 6, requires_grad=True)
    big = x * 1.0  # a fresh (10, 6) storage
    got = saved_for_backward(lambda: big[:2].exp())  # exp saves its output, not the view
    assert got == 2 * 6 * 4
    got = saved_for_backward(lambda: big[:2].sin())  # sin saves its input: a view of big
    assert got == 10 * 6 * 4
