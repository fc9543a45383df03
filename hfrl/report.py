"""Run reports: one plain, self-contained HTML page, with the PNG figures and the JSON it shows beside it.

Building blocks, usable by any run that wants a page:

* :class:`HtmlPage`: headings, paragraphs, tables, figures and links; every text is escaped with
  :func:`html.escape`; no scripts, no external resources.
* Figures: :func:`save_class_grids` (per class: noisy input, output before, output after, clean; each
  output framed green or red by the evaluator's verdict), :func:`save_label_grid` (the outputs people
  labelled, framed by their label), :func:`save_training_curves` (matplotlib, Agg backend).
* Numbers: :func:`run_metrics` (evaluator good-rate, PSNR, SSIM, source retention and the seed paper's
  per-image PSNR gain) and :func:`per_class_rows`.

:func:`write_report` puts them together for a fine-tuning run (``hfrl demo``): ``report.html``,
``metrics.json`` and the PNGs, all in the run directory.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from hfrl.evaluation import Evaluation, compare
from hfrl.runs import write_json

GOOD_RGB = (0.16, 0.65, 0.27)
"""Frame of an output the evaluator (or a labeler) called good."""
BAD_RGB = (0.84, 0.19, 0.15)
"""Frame of an output called bad."""
NEUTRAL_RGB = (0.55, 0.55, 0.55)
"""Frame of inputs, clean images and skipped outputs."""

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: bottom; text-align: left; color: #666; font-size: 0.88em; padding-top: 0.3em; }
figure { display: inline-block; margin: 0.4em 1em 0.8em 0; vertical-align: top; }
figcaption { color: #555; font-size: 0.88em; } img { image-rendering: pixelated; max-width: 100%; }
.muted { color: #666; font-size: 0.9em; } code { background: #f5f5f5; padding: 0 0.2em; }
"""


def _text(value: Any) -> str:
    """A cell's text: floats to 3 decimals, ``nan``/``None`` as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class HtmlPage:
    """A page built section by section; :meth:`write` saves it. Text is always escaped.

    Args:
        title: The page title (also the top heading).
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        """A section heading (``h2`` by default)."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, *, muted: bool = False) -> None:
        """A paragraph of plain text."""
        cls = ' class="muted"' if muted else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def bullets(self, items: Sequence[str]) -> None:
        """A bulleted list of plain-text items."""
        self.parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        caption: str | None = None,
    ) -> None:
        """A table with one row per mapping.

        Args:
            rows: The rows; missing keys give empty cells. Strings are shown as they are, floats with 3
                decimals (format them beforehand for other precision).
            columns: Keys to show, in order (default: the first row's).
            headers: Column titles by key (default: the keys).
            caption: A note under the table.
        """
        if not rows:
            return
        columns = list(columns or rows[0].keys())
        headers = headers or {}
        head = "".join(f"<th>{html.escape(headers.get(c, c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_text(r.get(c, '')))}</td>" for c in columns) + "</tr>"
            for r in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, src: str, caption: str = "", width: int | None = None) -> None:
        """An image file beside the page (``src`` relative to it), with a caption."""
        w = f' width="{int(width)}"' if width else ""
        alt = html.escape(caption or src)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{html.escape(src)}" alt="{alt}"{w}>{cap}</figure>')

    def links(self, items: Sequence[tuple[str, str]]) -> None:
        """A list of links ``(href relative to the page, text)``."""
        self.parts.append(
            "<ul>"
            + "".join(f'<li><a href="{html.escape(h)}">{html.escape(t)}</a></li>' for h, t in items)
            + "</ul>"
        )

    def render(self) -> str:
        """The whole page."""
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(self.parts)
            + "\n</body>\n</html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Save the page; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path


# --------------------------------------------------------------------------------------------- figures


def _tile(image: torch.Tensor, rgb: tuple[float, float, float], border: int = 1) -> torch.Tensor:
    """A ``(C, H, W)`` grey or RGB image as ``(3, H + 2b, W + 2b)`` RGB inside a coloured frame."""
    grey = image.detach().float().cpu().clamp(0, 1).expand(3, -1, -1)
    h, w = grey.shape[-2:]
    tile = torch.tensor(rgb).view(3, 1, 1).expand(3, h + 2 * border, w + 2 * border).clone()
    tile[:, border : border + h, border : border + w] = grey
    return tile


def _save_tiles(tiles: list[torch.Tensor], ncol: int, path: Path, scale: int) -> Path:
    grid = make_grid(torch.stack(tiles), nrow=ncol, padding=2, pad_value=1.0)  # (3, H', W')
    if scale > 1:
        grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path))
    return path


def _verdict_rgb(good: bool) -> tuple[float, float, float]:
    return GOOD_RGB if good else BAD_RGB


@dataclass(frozen=True)
class ClassGrid:
    """One class's before/after grid.

    Attributes:
        domain: ``source`` or ``target``.
        cls: The class.
        path: The PNG.
        n: Test images of the class.
        good_before: Evaluator good-rate of the initial generator on the class.
        good_after: The same after fine-tuning.
    """

    domain: str
    cls: int
    path: Path
    n: int
    good_before: float
    good_after: float


def save_class_grids(
    before: Evaluation, after: Evaluation, out_dir: str | Path, per_class: int = 8, scale: int = 2
) -> list[ClassGrid]:
    """One PNG per class: rows noisy input, output before, output after, clean image; one column per image.

    The two evaluations must come from the same noisy inputs (same split and seed). Outputs are framed
    green or red by the evaluator's verdict (grey without a judge of these images). Grey and colour images
    alike.

    Args:
        before: Evaluation of the initial generator.
        after: Evaluation of the fine-tuned generator.
        out_dir: Folder for ``grid_<domain>_<class>.png``.
        per_class: Images per class (the first ones of the split: not picked for looks).
        scale: Integer upscaling so that 28x28 digits are visible.
    """
    grids: list[ClassGrid] = []
    for b, a in ((before.source, after.source), (before.target, after.target)):
        if not torch.equal(b.noisy, a.noisy):
            raise ValueError(f"{b.name}: the two evaluations were not made on the same noisy inputs")
        for c in torch.unique(b.classes).tolist():
            idx = torch.nonzero(b.classes == c).flatten()[:per_class].tolist()
            rows = [
                [_tile(b.noisy[i], NEUTRAL_RGB) for i in idx],
                [
                    _tile(b.outputs[i], _verdict_rgb(bool(b.good[i])) if b.judged else NEUTRAL_RGB)
                    for i in idx
                ],
                [
                    _tile(a.outputs[i], _verdict_rgb(bool(a.good[i])) if a.judged else NEUTRAL_RGB)
                    for i in idx
                ],
                [_tile(b.clean[i], NEUTRAL_RGB) for i in idx],
            ]
            path = _save_tiles(
                [t for row in rows for t in row], len(idx), Path(out_dir) / f"grid_{b.name}_{c}.png", scale
            )
            mask = b.classes == c
            grids.append(
                ClassGrid(
                    b.name,
                    int(c),
                    path,
                    int(mask.sum()),
                    float(b.good[mask].float().mean()) if b.judged else math.nan,
                    float(a.good[mask].float().mean()) if a.judged else math.nan,
                )  # fmt: skip
            )
    return grids


def save_reference_grid(
    references: Mapping[str, Evaluation], path: str | Path, per_class: int = 2, scale: int = 2
) -> Path:
    """One PNG with a column per method: noisy input, each method's output, clean image (rows: images).

    Every evaluation must come from the same noisy target inputs; ``per_class`` images of each target
    class are shown (the first of the split), framed green or red by the evaluator's verdict.

    Raises:
        ValueError: when the evaluations' noisy inputs differ.
    """
    evaluations = list(references.values())
    first = evaluations[0].target
    for ev in evaluations[1:]:
        if not torch.equal(ev.target.noisy, first.noisy):
            raise ValueError("the reference evaluations were not made on the same noisy inputs")
    idx = [
        i
        for c in torch.unique(first.classes).tolist()
        for i in torch.nonzero(first.classes == c).flatten()[:per_class].tolist()
    ]
    tiles = []
    for i in idx:
        tiles.append(_tile(first.noisy[i], NEUTRAL_RGB))
        tiles += [_tile(ev.target.outputs[i], _verdict_rgb(bool(ev.target.good[i]))) for ev in evaluations]
        tiles.append(_tile(first.clean[i], NEUTRAL_RGB))
    return _save_tiles(tiles, len(evaluations) + 2, Path(path), scale)


def references_table(references: Mapping[str, Evaluation]) -> list[dict[str, str]]:
    """Display rows, one per method: target good-rate, PSNR and SSIM; source good-rate and PSNR."""
    rows = []
    for name, ev in references.items():
        t, s = ev.target.summary(), ev.source.summary()
        rows.append(
            {
                "method": name,
                "target good-rate": _pct(t["good_rate"]),
                "target PSNR": f"{t['psnr']:.2f} dB",
                "target SSIM": f"{t['ssim']:.3f}",
                "source good-rate": _pct(s["good_rate"]),
                "source PSNR": f"{s['psnr']:.2f} dB",
            }
        )
    return rows


def save_label_grid(
    outputs: torch.Tensor, values: torch.Tensor, path: str | Path, per_row: int = 25, scale: int = 1
) -> Path:
    """The labelled outputs, in the order they were asked about, framed by their label.

    Args:
        outputs: ``(N, C, H, W)`` outputs.
        values: ``(N,)`` labels: 1 good (green), 0 bad (red), ``nan`` skipped (grey).
        path: The PNG.
        per_row: Images per row.
        scale: Integer upscaling.
    """
    tiles = []
    for image, v in zip(outputs, values.tolist()):
        rgb = NEUTRAL_RGB if math.isnan(v) else _verdict_rgb(v > 0.5)
        tiles.append(_tile(image, rgb, border=2))
    return _save_tiles(tiles, min(per_row, max(1, len(tiles))), Path(path), scale)


CURVES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("reward model's score (training batch)", (("reward/mean", "mean reward"),)),
    ("regularisers", (("losses/aux", "source denoising (aux)"), ("losses/consistency", "consistency"),
                      ("losses/kl", "KL"))),
    ("evaluator good-rate (validation)", (("eval/target_good_rate", "target"), ("eval/source_good_rate", "source"))),
    ("PSNR, dB (validation)", (("eval/target_psnr", "target"), ("eval/source_psnr", "source"))),
)  # fmt: skip
"""Panels of :func:`save_training_curves`: ``(title, ((metric, legend), ...))``."""


def save_training_curves(
    history: Sequence[Mapping[str, float]], path: str | Path, skip: Sequence[str] = ()
) -> Path | None:
    """Training curves from a trainer's per-step metrics (``eval/*`` where present); ``None`` if empty.

    Args:
        history: One dict per update, as :class:`hfrl.agents.TrainResult` keeps them; a row may carry a
            ``step`` key (else its position + 1 is the step).
        path: The PNG.
        skip: Metrics to leave out (e.g. ``losses/kl`` when its weight is 0: it is logged, not optimised).
    """
    panels = [
        (title, [(k, label) for k, label in series if k not in skip and any(k in row for row in history)])
        for title, series in CURVES
    ]
    panels = [(t, s) for t, s in panels if s]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 2 if len(panels) > 2 else len(panels)
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, series) in zip(axes.flat, panels):
        for key, label in series:
            points = [
                (float(row.get("step", i + 1)), float(row[key]))
                for i, row in enumerate(history)
                if key in row and math.isfinite(float(row[key]))
            ]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- numbers


def run_metrics(before: Evaluation, after: Evaluation) -> dict[str, Any]:
    """What fine-tuning changed on the test split, as the report's metrics table shows it.

    Returns:
        ``target`` and ``source``: ``{good_rate, psnr, ssim}`` each ``{"before", "after", "change"}``;
        ``source_retention``: the source PSNR change in dB (negative = forgetting); and the seed paper's
        per-image ``target_psnr_gain`` (``mean``, ``std``, ``max``, ``min``, ``share_improved``).
    """
    out: dict[str, Any] = {}
    for name, b, a in (("target", before.target, after.target), ("source", before.source, after.source)):
        sb, sa = b.summary(), a.summary()
        out[name] = {
            key: {"before": sb[key], "after": sa[key], "change": sa[key] - sb[key]}
            for key in ("good_rate", "psnr", "ssim")
        }
        out[name]["n"] = sb["n"]
    delta = compare(before, after)
    out["source_retention"] = delta["source_psnr_change"]
    out["target_psnr_gain"] = delta["target_psnr_gain"]
    out["source_psnr_gain"] = delta["source_psnr_gain"]
    return out


def per_class_rows(before: Evaluation, after: Evaluation) -> list[dict[str, Any]]:
    """One row per class: ``domain``, ``class``, ``n``, good-rate and PSNR before and after."""
    rows = []
    for b, a in ((before.source, after.source), (before.target, after.target)):
        for rb, ra in zip(b.per_class(), a.per_class()):
            rows.append(
                {
                    "domain": rb["domain"], "class": rb["class"], "n": rb["n"],
                    "good_before": rb["good_rate"], "good_after": ra["good_rate"],
                    "psnr_before": rb["psnr"], "psnr_after": ra["psnr"],
                }
            )  # fmt: skip
    return rows


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def _signed(value: float, unit: str = "", digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.{digits}f}{unit}"


def metrics_table(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """:func:`run_metrics` as display rows ``metric / before / after / change``."""
    t, s, g = metrics["target"], metrics["source"], metrics["target_psnr_gain"]
    rows = [
        {"metric": "evaluator good-rate, target (1-9)", "before": _pct(t["good_rate"]["before"]),
         "after": _pct(t["good_rate"]["after"]), "change": _signed(100 * t["good_rate"]["change"], " pts", 1)},
        {"metric": "PSNR, target", "before": f"{t['psnr']['before']:.2f} dB", "after": f"{t['psnr']['after']:.2f} dB",
         "change": _signed(t["psnr"]["change"], " dB")},
        {"metric": "SSIM, target", "before": f"{t['ssim']['before']:.3f}", "after": f"{t['ssim']['after']:.3f}",
         "change": _signed(t["ssim"]["change"], "", 3)},
        {"metric": "evaluator good-rate, source", "before": _pct(s["good_rate"]["before"]),
         "after": _pct(s["good_rate"]["after"]), "change": _signed(100 * s["good_rate"]["change"], " pts", 1)},
        {"metric": "PSNR, source (retention)", "before": f"{s['psnr']['before']:.2f} dB",
         "after": f"{s['psnr']['after']:.2f} dB", "change": _signed(metrics["source_retention"], " dB")},
        {"metric": "per-image target PSNR gain, mean ± std", "before": "", "after": "",
         "change": f"{_signed(g['mean'], '')} ± {g['std']:.2f} dB"},
        {"metric": "per-image target PSNR gain, max / min", "before": "", "after": "",
         "change": f"{_signed(g['max'], '')} / {_signed(g['min'], '')} dB"},
        {"metric": "share of target images improved", "before": "", "after": "", "change": _pct(g["share_improved"])},
    ]  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------- the page


@dataclass
class RunSummary:
    """Everything :func:`write_report` shows.

    Attributes:
        title: Page title.
        before: Test-split evaluation of the initial generator.
        after: Test-split evaluation of the fine-tuned generator (same noisy inputs).
        history: The trainer's per-update metrics (for the training curves).
        stages: Seconds per stage, in the order they ran.
        stages_cpu: CPU seconds per stage (this process, all threads), if measured: on a shared machine
            they show what the run costs apart from waiting for the CPU.
        settings: Display rows ``{"setting", "value"}`` describing the run.
        labels: Label summary (``CollectedLabels.to_dict()``), or ``None`` without labels.
        label_outputs: ``(N, 1, H, W)`` outputs asked about, in order, for the label grid.
        label_values: ``(N,)`` their answers (1 good, 0 bad, ``nan`` skipped).
        reward: Reward summary (``RewardInfo.to_dict()``).
        notes: Extra paragraphs.
        files: Links to other files of the run ``(href, text)``.
        extra: More JSON for ``metrics.json``.
        skip_curves: Metrics left out of the training curves (see :func:`save_training_curves`).
        references: Method name -> test-split evaluation on the same inputs, in display order: the source
            generator, the best label-free baseline, the feedback result and the supervised bound.
        references_note: What the references are and where the full comparison lives.
    """

    title: str
    before: Evaluation
    after: Evaluation
    history: list[dict[str, float]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    stages_cpu: dict[str, float] = field(default_factory=dict)
    settings: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, Any] | None = None
    label_outputs: torch.Tensor | None = None
    label_values: torch.Tensor | None = None
    reward: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    skip_curves: tuple[str, ...] = ()
    references: dict[str, Evaluation] = field(default_factory=dict)
    references_note: str = ""


@dataclass(frozen=True)
class ReportFigures:
    """The PNGs of a report (made once by :func:`save_report_figures`; the page can be re-rendered).

    Attributes:
        grids: Before/after grids, one per class.
        curves: Training curves (``None`` without history).
        labels: Grid of the labelled outputs (``None`` without labels).
        references: One grid with a column per reference method (``None`` without references).
    """

    grids: list[ClassGrid]
    curves: Path | None
    labels: Path | None
    references: Path | None = None


def save_report_figures(run_dir: str | Path, summary: RunSummary) -> ReportFigures:
    """Draw the report's figures into ``run_dir/figures``."""
    figures = Path(run_dir) / "figures"
    label_png = None
    if summary.label_outputs is not None and summary.label_values is not None and len(summary.label_values):
        label_png = save_label_grid(summary.label_outputs, summary.label_values, figures / "labels.png")
    return ReportFigures(
        grids=save_class_grids(summary.before, summary.after, figures),
        curves=save_training_curves(summary.history, figures / "training_curves.png", summary.skip_curves),
        labels=label_png,
        references=save_reference_grid(summary.references, figures / "references.png")
        if summary.references
        else None,
    )


def write_report(
    run_dir: str | Path, summary: RunSummary, figures: ReportFigures | None = None, name: str = "report.html"
) -> Path:
    """Write ``report.html`` and ``metrics.json`` into ``run_dir``, with the figures (drawn unless given).

    Returns:
        The page's path.
    """
    run_dir = Path(run_dir)
    figures = figures or save_report_figures(run_dir, summary)
    grids, curves, label_png = figures.grids, figures.curves, figures.labels
    metrics = run_metrics(summary.before, summary.after)
    classes = per_class_rows(summary.before, summary.after)
    total = sum(summary.stages.values())
    write_json(
        run_dir / "metrics.json",
        {
            "metrics": metrics,
            "per_class": classes,
            "labels": summary.labels,
            "reward": summary.reward,
            "stages_seconds": summary.stages,
            "stages_cpu_seconds": summary.stages_cpu,
            "total_seconds": total,
            "references": {name: ev.to_dict() for name, ev in summary.references.items()},
            **summary.extra,
        },
    )

    page = HtmlPage(summary.title)
    for note in summary.notes:
        page.paragraph(note)
    t = metrics["target"]["good_rate"]
    page.paragraph(
        f"Evaluator good-rate on the target test digits: {_pct(t['before'])} → {_pct(t['after'])}; "
        f"source PSNR change {_signed(metrics['source_retention'], ' dB')}; "
        f"mean per-image target PSNR gain {_signed(metrics['target_psnr_gain']['mean'], ' dB')}. "
        f"Total time {total:.0f} s."
    )
    if summary.references:
        page.heading("Beside what you could get without feedback", anchor="references")
        page.table(
            references_table(summary.references),
            caption="The same noisy target test inputs and the same independent evaluator for every row. "
            + summary.references_note,
        )
        if figures.references is not None:
            page.figure(
                str(figures.references.relative_to(run_dir)),
                "columns: noisy input, " + ", ".join(summary.references) + ", clean image; rows: two test "
                "images of each target class; frames: green = the evaluator calls the output good, red = bad",
            )
    page.heading("Metrics (test split)", anchor="metrics")
    page.table(
        metrics_table(metrics),
        caption="Judged by the independent evaluator against the clean images, which the fine-tuning never "
        "sees. Before = the source generator, after = fine-tuned; the same noisy test inputs for both.",
    )
    page.heading("Per class", anchor="classes")
    page.table(
        [
            {
                **r,
                "good_before": _pct(r["good_before"]),
                "good_after": _pct(r["good_after"]),
                "psnr_before": f"{r['psnr_before']:.2f}",
                "psnr_after": f"{r['psnr_after']:.2f}",
            }
            for r in classes
        ],  # fmt: skip
        ["domain", "class", "n", "good_before", "good_after", "psnr_before", "psnr_after"],
        headers={
            "good_before": "good-rate before",
            "good_after": "good-rate after",
            "psnr_before": "PSNR before (dB)",
            "psnr_after": "PSNR after (dB)",
        },  # fmt: skip
    )
    page.heading("Before and after, per class", anchor="grids")
    page.paragraph(
        "Rows: noisy input, output before, output after, clean image. Frames: green = the evaluator calls "
        "the output good, red = bad. Columns: the first test images of each class.",
        muted=True,
    )
    for g in grids:
        page.figure(
            str(g.path.relative_to(run_dir)),
            f"{g.domain} class {g.cls}: {_pct(g.good_before)} → {_pct(g.good_after)} good (n={g.n})",
        )
    if curves is not None:
        page.heading("Training curves", anchor="curves")
        page.figure(str(curves.relative_to(run_dir)), "per update; validation metrics every few updates")
    page.heading("Labels used", anchor="labels")
    if summary.labels:
        lab = summary.labels
        page.paragraph(
            f"{lab['labels']} labels ({lab['good']} good, {lab['bad']} bad, {lab['skipped']} skipped) "
            f"in {len(lab['rounds'])} rounds."
        )
        page.table(
            [{**r, "seconds": f"{r['seconds']:.1f}"} for r in lab["rounds"]],
            ["round", "selection", "asked", "good", "bad", "skipped", "seconds", "note"],
        )
        if label_png is not None:
            page.figure(
                str(label_png.relative_to(run_dir)),
                "outputs asked about, in order; frame = the label (green good, red bad, grey skipped)",
            )
    else:
        page.paragraph("No labels: the reward is the label-free similarity reward.")
    if summary.reward:
        agree = summary.reward.get("agreement_with_evaluator") or {}
        if agree.get("n"):
            page.paragraph(
                f"Reward model vs the evaluator on {agree['n']} pool outputs nobody labelled: "
                f"{_pct(agree['accuracy'])} agreement (reward ≥ 0.5 read as good), AUC {agree['auc']:.3f}.",
                muted=True,
            )
    page.heading("Time per stage", anchor="time")
    cpu = summary.stages_cpu
    rows = [
        {"stage": k, "seconds": f"{v:.1f}", "share": _pct(v / total if total else math.nan),
         "CPU seconds": f"{cpu[k]:.1f}" if k in cpu else "–"}
        for k, v in summary.stages.items()
    ]  # fmt: skip
    rows.append({"stage": "total", "seconds": f"{total:.1f}", "share": "",
                 "CPU seconds": f"{sum(cpu.values()):.1f}" if cpu else "–"})  # fmt: skip
    page.table(
        rows,
        ["stage", "seconds", "share", "CPU seconds"] if cpu else ["stage", "seconds", "share"],
        caption="Wall-clock time; CPU seconds count this process's threads (less than wall time when other "
        "work shares the machine). Start-up (imports) comes before the first stage and is not included.",
    )
    if summary.settings:
        page.heading("Settings", anchor="settings")
        page.table(summary.settings)
    files = [("metrics.json", "metrics.json: every number on this page"), *summary.files]
    page.heading("Files", anchor="files")
    page.links(files)
    return page.write(run_dir / name)


__all__ = [
    "BAD_RGB",
    "CURVES",
    "GOOD_RGB",
    "NEUTRAL_RGB",
    "ClassGrid",
    "HtmlPage",
    "ReportFigures",
    "RunSummary",
    "metrics_table",
    "per_class_rows",
    "references_table",
    "run_metrics",
    "save_class_grids",
    "save_label_grid",
    "save_reference_grid",
    "save_report_figures",
    "save_training_curves",
    "write_report",
]
