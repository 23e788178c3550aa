"""`guard-bench replot`: redraw a benchmark's plots from its committed results, no rerun."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import report, rwku, throughput
from bench.rwku_frontier import frontier_plot


def _frontier(directory: Path, result: dict[str, Any]) -> None:
    frontier_plot(directory / "rwku_frontier.png", result["frontier"])


# results folder -> (the JSON its plots are drawn from, the bench's plotting function)
PLOTTERS = {
    "throughput": ("results.json", throughput.plots),
    "rwku": ("results.json", rwku.plots),
    "adapters": ("rwku.json", _frontier),
}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help=f"results folders, of {sorted(PLOTTERS)} (all)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    unknown = sorted(set(args.names) - set(PLOTTERS))
    if unknown:
        raise SystemExit(f"guard-bench replot: no plots known for {unknown}; of {sorted(PLOTTERS)}")
    drawn = {}
    for name in args.names or PLOTTERS:
        stem, plots = PLOTTERS[name]
        directory = report.RESULTS / name
        plots(directory, json.loads((directory / stem).read_text()))
        drawn[name] = sorted(p.name for p in directory.glob("*.png"))
    return {"summary": drawn}
