from pathlib import Path

import torch
from PIL import Image

from hfrl.data import Domains
from hfrl.evaluation import compare, evaluate_generator, format_table, save_grid
from hfrl.noise import make_noise


class Identity(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_evaluation_table_and_comparison(
    domains: Domains, source_generator, evaluator, tmp_path: Path
) -> None:
    noise = make_noise()
    before = evaluate_generator(Identity(), domains, noise, evaluator, seed=0)
    after = evaluate_generator(source_generator, domains, noise, evaluator, seed=0)
    rows = after.rows()
    assert [r["class"] for r in rows[:10]] == list(range(10))
    assert rows[-1]["class"] == "all" and rows[-1]["n"] == 1350
    # identity output = noisy input: PSNR equals the noisy PSNR
    assert abs(before.target.summary()["psnr"] - before.target.summary()["psnr_noisy"]) < 1e-4
    diff = compare(before, after)
    assert diff["target_psnr_gain"]["share_improved"] > 0.95
    assert diff["target_psnr_gain"]["mean"] > 3.0
    assert diff["source_good_rate_after"] >= 0.95
    # same seed: identical noisy inputs for both generators
    assert torch.equal(before.target.noisy, after.target.noisy)
    table = format_table(rows, ["domain", "class", "good_rate"])
    assert "target" in table and "good_rate" in table.splitlines()[0]
    grid = save_grid(after, tmp_path / "grid.png", per_class=3)
    w, h = Image.open(grid).size
    assert w > h / 10 * 3  # three columns of noisy|output|clean triplets
    assert h > 10 * 28
