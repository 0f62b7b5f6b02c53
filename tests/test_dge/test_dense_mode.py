"""Dense training mode runs the queries of the granularities a region did not choose
without autograd: the gradients must be those of running every query with it."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.analysis import randomize_routers, saved_for_backward
from vtpack_mm.dge import budget_loss, dge_encoders, last_complexity, SparseQueryBlock

BACKBONES = dict(
    PVT=(vtpack_mm.PVT, dict(arch='tiny')),
    DPVT=(vtpack_mm.DPVT, dict(arch='tiny')),
    DeiT=(vtpack_mm.DeiT, dict(arch='tiny', img_size=64, out_type='featmap')),
    MiT=(vtpack_mm.MiT, dict(arch='b0')))


def every_query_with_autograd(self, x, routing):
    """The plain dense pass: every granularity's queries through the block with autograd."""
    return self._delta(x, routing.queries)[0]


def dense_model(name, drop_path_rate, granularities=(1, 2, 4)):
    torch.manual_seed(0)
    cls, kw = BACKBONES[name]
    model = cls(**kw, drop_path_rate=drop_path_rate,
                dge_cfg=dict(granularities=granularities, train_mode='dense'))
    model.init_weights()
    randomize_routers(model)
    return model.double().train()


def loss_and_grads(model, x):
    torch.manual_seed(1)  # the same Gumbel noise and stochastic-depth draws
    model.zero_grad(set_to_none=True)
    loss = sum(o.mean() for o in model(x)) + budget_loss(last_complexity(model).ratio(), 0.5)
    loss.backward()
    after = torch.rand(3)  # where the random stream stands after the pass
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, after


def assert_same_as_plain_pass(model, x, monkeypatch):
    """The loss, every gradient and the random stream afterwards equal those of the plain
    pass; returns the gradients."""
    loss, grads, after = loss_and_grads(model, x)
    with monkeypatch.context() as m:
        m.setattr(SparseQueryBlock, '_dense_delta', every_query_with_autograd)
        ref_loss, ref_grads, ref_after = loss_and_grads(model, x)
    torch.testing.assert_close(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], msg=k)
    torch.testing.assert_close(after, ref_after)  # the pass draws what the plain one does
    return grads


@pytest.mark.parametrize('name', list(BACKBONES))
@pytest.mark.parametrize('drop_path_rate', [0.0, 0.5])
def test_dense_gradients_equal_every_query_with_autograd(name, drop_path_rate, monkeypatch):
    model = dense_model(name, drop_path_rate)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    grads = assert_same_as_plain_pass(model, x, monkeypatch)
    choices = torch.cat([r.choice.flatten() for r in model.last_complexity.routing])
    assert len(set(choices.tolist())) == 3  # every granularity chosen somewhere
    routers = [k for k in grads if '.router.' in k]
    assert routers and all(grads[k].abs().sum() > 0 for k in routers)


@pytest.mark.parametrize('name', ['PVT', 'DeiT'])
def test_dense_gradients_where_a_block_skips_every_region(name, monkeypatch):
    # the last block chooses no map query (PVT: none at all); its weights still get their
    # gradient, and it draws its masks as the plain pass does
    model = dense_model(name, 0.5, granularities=(0, 1, 2, 4))
    dge_encoders(model)[-1].force_choice = 0
    assert_same_as_plain_pass(model, torch.randn(2, 3, 64, 64, dtype=torch.float64),
                              monkeypatch)


def test_dense_mode_keeps_the_activations_of_the_chosen_queries_only(monkeypatch):
    model = dense_model('PVT', 0.0).float()
    x = torch.randn(2, 3, 64, 64)
    params = [*model.parameters(), *model.buffers()]

    def saved():
        torch.manual_seed(1)
        return saved_for_backward(lambda: sum(o.mean() for o in model(x)), exclude=params)

    ours = saved()
    with monkeypatch.context() as m:
        m.setattr(SparseQueryBlock, '_dense_delta', every_query_with_autograd)
        plain = saved()
    for e in dge_encoders(model):
        e.train_mode = 'sparse'
    sparse = saved()
    # what dense mode keeps beyond sparse mode: each query's change (for the router's
    # gradient), far less than the activations of every granularity
    assert sparse < ours < plain
