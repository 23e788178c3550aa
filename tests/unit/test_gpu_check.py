"""The device check's dry run: tiny shapes on the CPU, every part of the step exercised, so
the script a lent GPU runs in one go has run here first."""

from __future__ import annotations

import argparse

from bench.gpu_check import add_args, run


def test_the_device_check_runs_end_to_end_on_tiny_shapes():
    parser = argparse.ArgumentParser()
    add_args(parser)
    rows = run(parser.parse_args(["--dry-run"]))["rows"]
    assert {(r["batch"], r["targets"], r["flagged"]) for r in rows} == {
        (b, t, f) for b in (2, 4) for t in (10, 50) for f in (0.5, 1.0)
    }
    assert all(r["guard_step_ms"] > 0 and r["decode_step_ms"] > 0 for r in rows)
    assert all(r["ratio"] == r["guard_step_ms"] / r["decode_step_ms"] for r in rows)
