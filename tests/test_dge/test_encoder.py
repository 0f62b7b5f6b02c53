"""The DGE wrapped around a block: equivalences, gradients and complexity accounting."""
import pytest
import torch

from vtpack_mm.dge import ComplexityMeter, budget_loss, region_mean

CFG = dict(granularities=(1, 2, 4))


def run(block, x, hw, seed=None):
    """The block's output and the pass's cost."""
    if seed is not None:
        torch.manual_seed(seed)
    return block(x, hw)


@pytest.mark.parametrize('hw, E', [((8, 8), 0), ((5, 11), 1), ((3, 2), 2)])
def test_dense_sparse_and_inference_agree(tiny_block, hw, E):
    dense = tiny_block(dge_cfg=dict(CFG, train_mode='dense'))
    sparse = tiny_block(dge_cfg=dict(CFG, train_mode='sparse'))
    sparse.load_state_dict(dense.state_dict())
    # a router that prefers no granularity, so the sampled choices are mixed
    for b in (dense, sparse):
        torch.nn.init.normal_(b.dge.router.gate.weight, std=0.5)
        torch.nn.init.zeros_(b.dge.router.gate.bias)
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(2, E + hw[0] * hw[1], 8)
    dense.train(), sparse.train()
    y_dense, cost_dense = run(dense, x, hw, seed=3)
    y_sparse, cost_sparse = run(sparse, x, hw, seed=3)
    choice = cost_dense.routing.regions.choice
    assert torch.equal(choice, cost_sparse.routing.regions.choice)
    assert len(choice.unique()) > 1 or choice.numel() < 3
    torch.testing.assert_close(y_dense, y_sparse)
    sparse.eval()
    sparse.dge.force_choice = choice.flatten(1)
    y_inference, cost_inference = run(sparse, x, hw)
    torch.testing.assert_close(y_inference, y_sparse)
    # the counted queries agree between the three passes
    counts = [c.routing.num_queries.detach().to(torch.float32)
              for c in (cost_dense, cost_sparse, cost_inference)]
    torch.testing.assert_close(counts[0], counts[1])
    torch.testing.assert_close(counts[0], counts[2])


def test_finest_choice_reproduces_vanilla_block(tiny_block):
    vanilla = tiny_block()
    dge = tiny_block(dge_cfg=CFG)
    missing, unexpected = dge.load_state_dict(vanilla.state_dict(), strict=False)
    assert set(missing) == {'dge.router.gate.weight', 'dge.router.gate.bias'}
    assert not unexpected
    x = torch.randn(3, 1 + 7 * 9, 8) * 5
    vanilla.eval(), dge.eval()
    y, cost = dge(x, (7, 9))
    assert (cost.routing.regions.choice == 0).all(), 'a fresh router must pick the finest granularity'
    assert not cost.routing.pooled, 'all regions at phi=1 run the vanilla block directly'
    torch.testing.assert_close(y, vanilla(x, (7, 9))[0])
    # the pooled path computes the same (phi = 1 pools each token alone)
    dge.dge._finest_is_identity = False
    y, cost = dge(x, (7, 9))
    torch.testing.assert_close(y, vanilla(x, (7, 9))[0])
    assert cost.routing.pooled


def test_extra_tokens_stay_at_full_granularity(tiny_block):
    vanilla = tiny_block()
    dge = tiny_block(dge_cfg=CFG)
    dge.load_state_dict(vanilla.state_dict(), strict=False)
    vanilla.eval(), dge.eval()
    x = torch.randn(2, 2 + 6 * 6, 8)
    dge.dge.force_choice = 2  # coarsest everywhere
    y, cost = dge(x, (6, 6))
    # extra tokens attend to the same dense keys/values, so they match the vanilla block
    torch.testing.assert_close(y[:, :2], vanilla(x, (6, 6))[0][:, :2])
    assert cost.routing.queries.lengths == [2 + 4, 2 + 4]
    # coarse: every 4x4 region's tokens moved by one shared delta
    delta = (y - x)[:, 2:].view(2, 6, 6, 8)
    torch.testing.assert_close(delta[:, :4, :4], delta[:, :1, :1].expand(2, 4, 4, 8))


def test_layer_wise_routing_is_one_region(tiny_block):
    block = tiny_block(dge_cfg=dict(granularities=(1, 2), region_size='layer'))
    block.eval()
    block.dge.force_choice = 1
    x = torch.randn(2, 5 * 7, 8)
    _, cost = block(x, (5, 7))
    assert cost.routing.regions.choice.shape == (2, 1, 1)
    assert cost.routing.queries.lengths == [3 * 4, 3 * 4]


@pytest.mark.parametrize('mode', ['dense', 'sparse'])
def test_router_gets_gradient_through_output_and_beta(tiny_block, mode):
    block = tiny_block(dge_cfg=dict(CFG, train_mode=mode))
    block.train()
    x = torch.randn(2, 8 * 8, 8)
    torch.manual_seed(0)
    y, cost = block(x, (8, 8))
    w = block.dge.router.gate.weight
    (g_out, ) = torch.autograd.grad((y * torch.randn_like(y)).sum(), w, retain_graph=True)
    assert g_out.abs().sum() > 0
    meter = ComplexityMeter()
    meter.add('stage1', cost.static, cost.dynamic)
    beta = meter.ratio()
    (g_beta, ) = torch.autograd.grad(budget_loss(beta, 0.0), block.dge.router.gate.bias)
    # pushing beta down must lower the finest granularity's logit most
    assert g_beta[0] > 0 and g_beta[0] > g_beta[2]


def test_beta_gradient_is_the_straight_through_estimate(tiny_block):
    block = tiny_block(dge_cfg=dict(CFG, train_mode='sparse'))
    block.train()
    x = torch.randn(1, 8 * 8, 8)
    torch.manual_seed(5)
    dyn = block(x, (8, 8))[1].dynamic
    (g, ) = torch.autograd.grad(dyn.sum(), block.dge.router.gate.bias)
    # hand derivation: d(sum_rk soft_rk n_rk c)/d b_j = c sum_r soft_rj (n_rj - sum_k soft_rk n_rk)
    geo = block.dge.geometry((8, 8), x.device)
    torch.manual_seed(5)
    h = block.dge.router(region_mean(x, geo)).detach()
    gumbel = -torch.empty_like(h).exponential_().log()
    soft = torch.softmax(h + gumbel, -1)[0]
    n = geo.region_queries
    c = block.query_macs(64, 1, (8, 8)) - block.query_macs(64, 0, (8, 8))
    expected = c * (soft * (n - (soft * n).sum(-1, keepdim=True))).sum(0)
    torch.testing.assert_close(g, expected.to(g.dtype), rtol=1e-4, atol=1e-3)


def test_beta_hand_count(tiny_block):
    """5x6 map, S=4: regions hold 16, 8, 4, 2 valid tokens."""
    block = tiny_block(dge_cfg=CFG)
    block.eval()
    block.dge.force_choice = torch.tensor([[0, 1, 2, 1]])  # phi = 1, 2, 4, 2
    x = torch.randn(1, 30, 8)
    _, block_cost = block(x, (5, 6))
    # phi=1 on 16 tokens: 16 queries; phi=2 on a 4x2 strip: 2; phi=4: 1; phi=2 on 1x2: 1
    assert block_cost.routing.queries.lengths == [20]
    C = 8
    stem = 1000.0
    router = 4 * C * 3
    cost = lambda n, q: 2 * C * C * n + (8 * C * C + 2 * n * C) * q  # noqa: E731
    meter = ComplexityMeter()
    meter.add('stem', stem)
    meter.add('stage1', block_cost.static, block_cost.dynamic)
    expected = (stem + cost(30, 20) + router) / (stem + cost(30, 30) + router)
    assert meter.ratio().item() == pytest.approx(expected, rel=1e-6)
