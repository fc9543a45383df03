from pathlib import Path

import torch

from hfrl.checkpoint import load_checkpoint
from hfrl.data import ImageSet
from hfrl.pretrain import PretrainConfig, pretrain


def test_pretrain_improves_psnr_and_writes_a_run(tmp_path: Path, mnist: ImageSet) -> None:
    config = PretrainConfig(epochs=4, width=16, bottleneck=32, device="cpu", seed=3)
    result = pretrain(config, data=mnist, out_dir=tmp_path, progress=False)
    assert len(result.history) == 4
    noisy_psnr = 9.4  # sigma 0.5 clipped Gaussian on MNIST
    assert result.best_val_psnr > noisy_psnr + 1.5
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 5
    assert (tmp_path / "config.json").exists()
    model, doc = load_checkpoint(result.checkpoint, kind="generator")
    assert doc["metadata"]["best_val_psnr"] == result.best_val_psnr
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model(x), result.generator(x))


def test_same_seed_same_generator(mnist: ImageSet) -> None:
    config = PretrainConfig(epochs=1, width=8, bottleneck=16, device="cpu", seed=7, family="mlp")
    a = pretrain(config, data=mnist, progress=False)
    b = pretrain(config, data=mnist, progress=False)
    for pa, pb in zip(a.generator.parameters(), b.generator.parameters()):
        assert torch.equal(pa, pb)
    assert a.best_val_psnr == b.best_val_psnr


def test_early_stopping(mnist: ImageSet) -> None:
    config = PretrainConfig(epochs=50, width=4, bottleneck=4, lr=1e-9, patience=2, device="cpu", family="mlp")
    result = pretrain(config, data=mnist, progress=False)
    assert len(result.history) < 10


def test_pretrain_leaves_the_callers_global_rng_alone(mnist: ImageSet) -> None:
    config = PretrainConfig(epochs=1, width=4, bottleneck=4, device="cpu", seed=5, family="mlp")
    torch.manual_seed(1234)
    expected = torch.rand(3)  # what the caller's generator gives next, untouched
    torch.manual_seed(1234)
    first = pretrain(config, data=mnist.subset(torch.arange(200)), progress=False)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(999)  # another caller state: the same seed still gives the same generator
    second = pretrain(config, data=mnist.subset(torch.arange(200)), progress=False)
    for pa, pb in zip(first.generator.parameters(), second.generator.parameters()):
        assert torch.equal(pa, pb)
