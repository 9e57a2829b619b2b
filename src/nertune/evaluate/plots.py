"""PNG plots next to the metrics: training curves, per-type F1, type confusion.

matplotlib's object API (Figure + the Agg canvas), never pyplot: no global
backend switch, no display needed, safe inside a training process. Without
matplotlib the plots are skipped with a notice.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from nertune.atomic import atomic_path
from nertune.evaluate.error_analysis import error_breakdown

CURVES = "training_curves.png"
PER_TYPE = "per_type_f1.png"
CONFUSION = "confusion.png"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # noqa: PLC0415  (optional: matplotlib)

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def read_step_log(path: Path) -> list[tuple[int, float]]:
    """(step, training loss) rows of train_log.csv; empty when the file is missing."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        # A resumed run appends to the log: keep the last value logged for each step.
        by_step = {int(row["step"]): float(row["loss"]) for row in csv.DictReader(handle) if row.get("loss")}
    return sorted(by_step.items())


def training_curves(path: Path, epochs: list[dict], steps: list[tuple[int, float]]) -> Path | None:
    """Loss (per logged step and per epoch, train and validation) and validation F1, by epoch."""
    if not epochs:
        return None
    figure = _figure(10, 4)
    loss_axes, f1_axes = figure.subplots(1, 2)
    numbers = [e["epoch"] for e in epochs]
    if steps:
        steps_per_epoch = steps[-1][0] / max(numbers)  # every epoch has the same number of steps
        loss_axes.plot(
            [s / steps_per_epoch for s, _ in steps],
            [loss for _, loss in steps],
            color="tab:blue",
            alpha=0.35,
            linewidth=1,
            label="train loss (logged steps)",
        )
    loss_axes.plot(numbers, [e["train_loss"] for e in epochs], "o-", color="tab:blue", label="train loss (epoch mean)")
    validated = [e for e in epochs if "validation" in e]
    if validated:
        loss_axes.plot(
            [e["epoch"] for e in validated], [e["validation"]["loss"] for e in validated], "s-", color="tab:orange", label="validation loss"
        )
        f1_axes.plot([e["epoch"] for e in validated], [e["validation"]["f1"] for e in validated], "o-", color="tab:green")
        for e in validated:
            f1_axes.annotate(
                f"{e['validation']['f1']:.4f}",
                (e["epoch"], e["validation"]["f1"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_axes.legend(fontsize=8)
    f1_axes.set(xlabel="epoch", ylabel="entity F1 (conlleval)", title="Validation F1")
    for axes in (loss_axes, f1_axes):
        axes.set_xticks(numbers)
        axes.grid(alpha=0.3)
    return _save(figure, path)


def per_type_f1(path: Path, per_type: dict, title: str) -> Path | None:
    """Horizontal bars of F1 per entity type, with precision / recall / support written beside them."""
    if not per_type:
        return None
    types = sorted(per_type)
    figure = _figure(7, 1.2 + 0.5 * len(types))
    axes = figure.subplots()
    f1s = [per_type[t]["f1"] for t in types]
    axes.barh(types, f1s, color="tab:blue")
    for row, t in enumerate(types):
        v = per_type[t]
        axes.text(
            min(v["f1"], 1.0) + 0.01,
            row,
            f"F1 {v['f1']:.3f}  P {v['precision']:.3f}  R {v['recall']:.3f}  n={v['support']}",
            va="center",
            fontsize=8,
        )
    axes.set(xlim=(0, 1.6), xlabel="F1", title=title)
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    axes.invert_yaxis()
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def confusion_heatmap(path: Path, confusion: dict, title: str) -> Path | None:
    """Gold entity type (rows) against predicted type (columns); "O" = no entity."""
    if not confusion:
        return None
    types = sorted(({t for row in confusion.values() for t in row} | set(confusion)) - {"O"}) + ["O"]
    matrix = [[confusion.get(g, {}).get(p, 0) for p in types] for g in types]
    figure = _figure(1.5 + 0.9 * len(types), 1.2 + 0.8 * len(types))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if types[i] == types[j] == "O":
                continue  # no-entity against no-entity is not counted
            axes.text(j, i, str(value), ha="center", va="center", fontsize=8, color="white" if value > peak / 2 else "black")
    axes.set_xticks(range(len(types)), types)
    axes.set_yticks(range(len(types)), types)
    axes.set(xlabel="predicted type (O: missed)", ylabel="gold type (O: spurious)", title=title)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return _save(figure, path)


def evaluation_plots(directory: Path, metrics: dict, label: str) -> list[str]:
    """Per-type F1 bars and the confusion heatmap of one evaluation (metrics with "confusion")."""
    if not _have_matplotlib():
        return []
    written = [
        per_type_f1(directory / PER_TYPE, metrics.get("per_type", {}), f"Per-type F1 — {label}"),
        confusion_heatmap(directory / CONFUSION, metrics.get("confusion", {}), f"Entity type confusion — {label}"),
    ]
    return [p.name for p in written if p]


def write_run_plots(output_dir: Path, metrics: dict, reports: dict | None = None, splits=None) -> list[str]:
    """All three plots of a training run, next to its metrics.json. Never fails the run: a plot error is a notice."""
    from nertune.console import notice  # noqa: PLC0415  (CLI start-up: rich console)

    output_dir = Path(output_dir)
    try:
        if not _have_matplotlib():
            return []
        curves = training_curves(output_dir / CURVES, metrics.get("epochs", []), read_step_log(output_dir / "train_log.csv"))
        names = [curves.name] if curves else []
        split = "test" if "test" in metrics else "validation" if "validation" in metrics else None
        if split:
            evaluation = dict(metrics[split])
            report, gold_file = (reports or {}).get(split), getattr(splits, split, None)
            if report is not None and gold_file is not None:
                evaluation["confusion"] = error_breakdown([s.tags for s in gold_file.sentences], report["predictions"])["confusion"]
            names += evaluation_plots(output_dir, evaluation, split)
        return names
    except Exception as error:  # noqa: BLE001 — a plot must never cost a finished run its model card
        notice(f"plots skipped ({type(error).__name__}: {error})")
        return []


def plots_markdown(names: list[str]) -> str:
    """The model card's section linking the plots."""
    if not names:
        return ""
    titles = {CURVES: "Training curves", PER_TYPE: "Per-type F1", CONFUSION: "Entity type confusion"}
    return "\n## Plots\n\n" + "\n".join(f"![{titles.get(n, n)}]({n})" for n in names) + "\n"


@functools.cache  # one notice per process
def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415  (optional: matplotlib)
    except ImportError:
        from nertune.console import notice  # noqa: PLC0415  (CLI start-up: rich console)

        notice("matplotlib is not installed; plots skipped (pip install matplotlib)")
        return False
    return True
