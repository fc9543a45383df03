"""The HTML report: escaped text, figures that exist, numbers that match the evaluations."""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hfrl.evaluation import DomainEvaluation, Evaluation
from hfrl.report import (
    HtmlPage,
    RunSummary,
    metrics_table,
    per_class_rows,
    run_metrics,
    save_class_grids,
    save_label_grid,
    save_training_curves,
    write_report,
)


def _domain(name: str, classes: list[int], seed: int, shift: float = 0.0) -> DomainEvaluation:
    g = torch.Generator().manual_seed(seed)
    n = len(classes)
    noisy = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(100))  # same inputs for both
    return DomainEvaluation(
        name=name,
        classes=torch.tensor(classes),
        noisy=noisy,
        outputs=torch.rand(n, 1, 28, 28, generator=g),
        clean=torch.zeros(n, 1, 28, 28),
        psnr_noisy=torch.full((n,), 9.0),
        psnr=torch.linspace(10, 14, n) + shift,
        ssim=torch.full((n,), 0.6 + shift / 10),
        good=torch.arange(n) % 2 == (0 if shift else 1),
    )


@pytest.fixture()
def evaluations() -> tuple[Evaluation, Evaluation]:
    before = Evaluation(_domain("source", [0, 0, 0], 1), _domain("target", [1, 1, 2, 2, 2], 2))
    after = Evaluation(_domain("source", [0, 0, 0], 3, -0.5), _domain("target", [1, 1, 2, 2, 2], 4, 1.0))
    return before, after


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


def test_page_escapes_every_text(tmp_path) -> None:
    page = HtmlPage("<script>alert(1)</script>")
    page.heading("a & b")
    page.paragraph("<b>bold?</b>")
    page.table([{"k": "<i>", "v": 0.123456}], headers={"k": "<key>"}, caption="c<")
    page.figure('x".png', "cap<tion>")
    page.links([("a.json", "<file>")])
    page.bullets(["<li>"])
    text = page.write(tmp_path / "p.html").read_text()
    assert "<script>" not in text and "<b>bold" not in text and "<i>" not in text
    assert html.escape("<script>alert(1)</script>") in text and "0.123" in text
    parser = _Collector()
    parser.feed(text)
    assert parser.srcs == ['x".png']


def test_metrics_match_the_evaluations(evaluations) -> None:
    before, after = evaluations
    m = run_metrics(before, after)
    assert m["target"]["psnr"]["change"] == pytest.approx(1.0)
    assert m["source_retention"] == pytest.approx(-0.5)
    assert (
        m["target_psnr_gain"]["mean"] == pytest.approx(1.0) and m["target_psnr_gain"]["share_improved"] == 1.0
    )
    assert m["target"]["good_rate"]["before"] == pytest.approx(2 / 5)
    rows = per_class_rows(before, after)
    assert [(r["domain"], r["class"], r["n"]) for r in rows] == [
        ("source", 0, 3),
        ("target", 1, 2),
        ("target", 2, 3),
    ]
    table = metrics_table(m)
    assert table[0]["before"] == "40.0 %" and "+1.00" in table[5]["change"]


def test_class_grids_show_four_rows(evaluations, tmp_path) -> None:
    before, after = evaluations
    grids = save_class_grids(before, after, tmp_path, per_class=3, scale=1)
    assert [(g.domain, g.cls) for g in grids] == [("source", 0), ("target", 1), ("target", 2)]
    width, height = Image.open(grids[2].path).size
    # tiles of 28 + 2 frame pixels, 2 pixels of padding around each: 4 rows, 3 columns
    assert (width, height) == (2 + 3 * 32, 2 + 4 * 32)
    other = Evaluation(before.source, _domain("target", [1, 1, 2, 2, 2], 2))
    object.__setattr__(other.target, "noisy", torch.zeros_like(before.target.noisy))
    with pytest.raises(ValueError, match="same noisy inputs"):
        save_class_grids(before, other, tmp_path)


def test_label_grid_and_curves(tmp_path) -> None:
    outputs = torch.rand(7, 1, 28, 28)
    path = save_label_grid(
        outputs, torch.tensor([1.0, 0.0, math.nan, 1, 1, 0, 0]), tmp_path / "l.png", per_row=4
    )
    image = Image.open(path).convert("RGB")
    assert image.size == (2 + 4 * 34, 2 + 2 * 34)
    assert image.getpixel((3, 3))[1] > image.getpixel((3, 3))[0]  # first frame green (good)
    assert save_training_curves([], tmp_path / "none.png") is None
    history = [{"step": 0.0, "eval/target_good_rate": 0.5}] + [
        {"step": float(i), "reward/mean": i / 10, "losses/kl": 9.0} for i in range(1, 4)
    ]
    assert save_training_curves(history, tmp_path / "c.png", skip=("losses/kl",)).is_file()


def test_write_report_links_only_existing_files(evaluations, tmp_path) -> None:
    before, after = evaluations
    summary = RunSummary(
        title="demo & test",
        before=before,
        after=after,
        history=[{"step": 1.0, "reward/mean": 0.4}, {"step": 2.0, "reward/mean": 0.5}],
        stages={"setup": 1.0, "finetune": 3.0},
        settings=[{"setting": "run.seed", "value": "0"}],
        labels={
            "labels": 2,
            "good": 1,
            "bad": 1,
            "skipped": 0,
            "rounds": [
                {
                    "round": 1,
                    "selection": "random",
                    "asked": 2,
                    "good": 1,
                    "bad": 1,
                    "skipped": 0,
                    "seconds": 0.1,
                    "note": "<n>",
                }
            ],
        },  # fmt: skip
        label_outputs=torch.rand(2, 1, 28, 28),
        label_values=torch.tensor([1.0, 0.0]),
        reward={"agreement_with_evaluator": {"n": 10, "accuracy": 0.7, "auc": 0.8}},
        files=[("config.toml", "config")],
    )
    (tmp_path / "config.toml").write_text("seed = 0\n")
    page = write_report(tmp_path, summary)
    parser = _Collector()
    parser.feed(page.read_text())
    assert len(parser.srcs) == 3 + 2  # three class grids, curves, labels
    for ref in parser.srcs + parser.hrefs:
        assert (tmp_path / ref).is_file(), ref
    text = " ".join(parser.text)
    assert "40.0 % → 60.0 %" in text and "70.0 % agreement" in text and "total" in text
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["total_seconds"] == pytest.approx(4.0)
    assert data["metrics"]["target"]["good_rate"]["after"] == pytest.approx(0.6)
    assert re.search(r"<title>demo &amp; test</title>", page.read_text())
    assert Path(tmp_path / "figures" / "training_curves.png").is_file()


def test_grids_and_metrics_of_colour_images_without_a_judge(tmp_path: Path) -> None:
    from hfrl.data import Domains, ImageSet
    from hfrl.evaluation import evaluate_generator, save_grid
    from hfrl.generators import GeneratorConfig, build_generator
    from hfrl.judges import Evaluator
    from hfrl.noise import make_noise
    from tests.conftest import shapes_dataset

    images, labels = shapes_dataset(40, 3, 12, 20)
    domains = Domains(ImageSet.from_array(images, labels), (0,), (1,))
    generator = build_generator(GeneratorConfig(width=4, bottleneck=8, image_size=(12, 20), channels=3))
    noise, judge = make_noise("gaussian", 0.3), Evaluator(None)
    before = evaluate_generator(generator, domains, noise, judge)
    after = evaluate_generator(torch.nn.Identity(), domains, noise, judge)  # the noisy input as output
    assert not before.target.judged and math.isnan(before.target.summary()["good_rate"])
    grids = save_class_grids(before, after, tmp_path)
    assert len(grids) == 2 and all(math.isnan(g.good_before) for g in grids)
    picture = np.asarray(Image.open(grids[0].path).convert("RGB"))
    assert picture.shape[0] > 4 * 12 and picture.shape[1] > 20
    assert (picture[..., 0] != picture[..., 1]).any()  # colour survives into the grid
    assert np.asarray(Image.open(save_grid(after, tmp_path / "grid.png"))).shape[-1] == 3
    metrics = run_metrics(before, after)
    rows = {r["metric"]: r for r in metrics_table(metrics)}
    assert next(r for name, r in rows.items() if "good-rate" in name)["after"] == "–"
    assert math.isfinite(metrics["target"]["psnr"]["after"])
