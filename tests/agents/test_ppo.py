"""PPO's adaptive KL coefficient: refused where it cannot adapt, adapting where it can."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfrl.agents import make_config, make_trainer
from hfrl.errors import ConfigError


def test_adaptive_kl_from_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="adaptive_kl needs kl > 0"):
        make_config("ppo", adaptive_kl=True, kl=0.0)
    with pytest.raises(ConfigError, match="kl_target"):
        make_config("ppo", adaptive_kl=True, kl=0.01, kl_target=0.0)
    make_config("ppo", adaptive_kl=False, kl=0.0)  # a fixed coefficient of 0 is fine


def test_adaptive_kl_moves_the_coefficient(tiny: dict, tiny_reward, tmp_path: Path) -> None:
    # The policy starts at the reference: KL 0 is below any target, so the coefficient halves each update.
    config = make_config("ppo", **tiny, adaptive_kl=True, kl=0.04, kl_target=1e6)
    trainer = make_trainer("ppo", config, reward=tiny_reward, run_dir=tmp_path)
    assert [trainer.update()["charts/kl_coef"] for _ in range(2)] == [0.02, 0.01]
