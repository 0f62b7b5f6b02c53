import pytest

from vtpack_mm.dge import DynamicGrainedEncoder, budget_loss, check_budget, check_granularities


@pytest.mark.parametrize('phis, region, words', [
    ((1, 3, 4), None, ['3', 'divide', '4']),
    ((1, 2, 4), 6, ['4', 'divide', '6']),
    ((), None, ['empty']),
    ((1, -2), None, ['>= 0']),
    ((1, 1, 2), None, ['repeated']),
    ((0, ), None, ['no positive']),
    ((1, 2), 0, ['region_size']),
])
def test_bad_granularities_name_the_problem(phis, region, words):
    with pytest.raises(ValueError) as err:
        check_granularities(phis, region)
    for w in words:
        assert w in str(err.value)


def test_encoder_rejects_bad_mode_and_tau():
    with pytest.raises(ValueError, match='train_mode'):
        DynamicGrainedEncoder(8, train_mode='fast')
    with pytest.raises(ValueError, match='gumbel_tau'):
        DynamicGrainedEncoder(8, gumbel_tau=0)
    with pytest.raises(ValueError, match='init_gate'):
        DynamicGrainedEncoder(8, init_gate=1.0)


@pytest.mark.parametrize('gamma', [-0.1, 1.5, 'half'])
def test_budget_outside_unit_interval(gamma):
    with pytest.raises(ValueError, match=r'gamma must be in \[0, 1\]'):
        check_budget(gamma)


def test_budget_loss_value():
    import torch
    ratio = torch.tensor([0.4, 0.8])
    assert budget_loss(ratio, 0.5, 2.0).item() == pytest.approx(2.0 * (0.6 - 0.5)**2)
    with pytest.raises(ValueError, match='lambda'):
        budget_loss(ratio, 0.5, -1.0)


def test_valid_configs_are_normalised():
    assert check_granularities([4, 2, 1], None) == ((4, 2, 1), 4)
    assert check_granularities((1, 2), 8) == ((1, 2), 8)
    assert check_granularities((0, 1), None) == ((0, 1), 1)
    assert check_granularities((1, 2, 4), 'layer') == ((1, 2, 4), 'layer')
