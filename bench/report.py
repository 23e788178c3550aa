"""Write a benchmark's results: JSON, a Markdown table and PNG plots under bench/results/."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def out_dir(name: str, root: Path | None = None) -> Path:
    path = (root or RESULTS) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def command_line() -> str:
    """This process's command line as a shell reads it back: an empty argument stays one."""
    return shlex.join(sys.argv)


def write(
    directory: Path,
    results: dict[str, Any],
    tables: dict[str, tuple[list[dict], list[str]]],
    stem: str = "results",
) -> None:
    """<stem>.json (with the command line and time) and <stem>.md (one table per entry)."""
    results = {"command": command_line(), "finished_at": time.time(), **results}
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    parts = [f"Command: `{results['command']}`\n"]
    for title, (rows, columns) in tables.items():
        parts += [f"### {title}\n", markdown_table(rows, columns), ""]
    (directory / f"{stem}.md").write_text("\n".join(parts))


def bar_plot(
    path: Path, labels: list[str], series: dict[str, list[float]], title: str, ylabel: str
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.8), 4))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width, values, width, label=name)
    ax.set_xticks(x + width * (len(series) - 1) / 2, labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # Outside the axes: inside, it hid the bars of whichever labels sat under it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def line_plot(
    path: Path,
    series: dict[str, tuple[list[float], list[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
