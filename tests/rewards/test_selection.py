"""Query selection: random vs uncertainty, reproducible, distinct indices."""

from __future__ import annotations

import pytest
import torch

from hfrl.errors import ConfigError
from hfrl.rewards import (
    DisagreementSelector,
    EntropySelector,
    RandomSelector,
    RewardEnsemble,
    RewardModelConfig,
    make_reward_model,
    make_selector,
)


def _pool(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 28, 28, generator=g), torch.rand(n, 1, 28, 28, generator=g)


def _ensemble() -> RewardEnsemble:
    return RewardEnsemble(
        [make_reward_model(RewardModelConfig(inputs=("output",)), seed=s) for s in range(3)]
    )


@pytest.mark.parametrize("name", ["random", "disagreement", "entropy"])
def test_selectors_return_distinct_reproducible_indices(name) -> None:
    selector = make_selector(name, _ensemble())
    x, o = _pool()
    a = selector.select(x, o, 10, torch.Generator().manual_seed(5))
    b = selector.select(x.numpy(), o.numpy(), 10, torch.Generator().manual_seed(5))
    assert a.shape == (10,) and len(set(a.tolist())) == 10 and torch.equal(a, b)
    assert selector.select(x, o, 100).shape == (40,)


def test_disagreement_picks_the_most_uncertain() -> None:
    ens = _ensemble()
    x, o = _pool()
    std = ens.uncertainty(x, o)
    chosen = DisagreementSelector(ens).select(x, o, 5)
    assert set(chosen.tolist()) == set(torch.argsort(std, descending=True)[:5].tolist())
    thinned = DisagreementSelector(ens, diversity_pool=3).select(x, o, 5)
    assert set(thinned.tolist()) <= set(torch.argsort(std, descending=True)[:15].tolist())


def test_entropy_picks_probabilities_near_one_half() -> None:
    model = make_reward_model(RewardModelConfig(inputs=("output",)))
    x, o = _pool()
    p = model.predict_th(x, o)
    chosen = EntropySelector(model).select(x, o, 4)
    assert set(chosen.tolist()) == set(torch.argsort((p - 0.5).abs())[:4].tolist())


def test_random_selector_differs_by_seed() -> None:
    x, o = _pool()
    a = RandomSelector().select(x, o, 10, torch.Generator().manual_seed(0))
    b = RandomSelector().select(x, o, 10, torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


def test_selector_errors() -> None:
    with pytest.raises(ConfigError):
        make_selector("margin", _ensemble())
    with pytest.raises(ConfigError):
        make_selector("entropy")
    with pytest.raises(ConfigError):
        DisagreementSelector(make_reward_model())  # type: ignore[arg-type]


def test_noisy_inputs_are_needed_only_by_models_that_read_them() -> None:
    from hfrl.errors import DataError

    _, o = _pool(6)
    assert RandomSelector().select(None, o, 2).shape == (2,)
    assert DisagreementSelector(_ensemble()).select(None, o, 2).shape == (2,)
    pair = make_reward_model(RewardModelConfig(inputs=("noisy", "output")))
    with pytest.raises(DataError, match="noisy"):
        EntropySelector(pair).select(None, o, 2)
