"""`guard-unlearn`: train an unlearning LoRA adapter for one forget target, offline."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from guard_server.unlearn import UnlearnConfig, get_method, make_config, method_names
from guard_server.unlearn.presets import PRESETS, get_preset

ERR_SET = "--set expects key=value, got {item!r}"
ERR_NO_FILE = "no spec file at {path!r}"
ERR_BAD_JSON = "spec file {path!r} is not a JSON object: {reason}"
ERR_NO_DB = "no registry database at {path!r} (pass --db, or a spec .json file)"
ERR_NO_TARGET = "no forget target {target!r} in {path!r}"
ERR_MODEL = "no model at {path!r}: {reason}"


def _keys_epilog() -> str:
    common = [f.name for f in dataclasses.fields(UnlearnConfig)]
    lines = [f"--set keys for every method: {', '.join(common)}", "and per method:"]
    for name in method_names():
        own = [f.name for f in dataclasses.fields(get_method(name).config_cls)]
        lines.append(f"  {name}: {', '.join(k for k in own if k not in common) or '-'}")
    lines.append("presets (--preset NAME; --set overrides their settings):")
    for name, preset in PRESETS.items():
        settings = " ".join(f"{k}={v}" for k, v in preset.settings.items())
        spec = " ".join(f"{k}={v}" for k, v in preset.spec.items())
        lines.append(f"  {name}: {preset.about}")
        spec = f"; spec: {spec}" if spec else ""
        lines.append(f"    method {preset.method}: {settings}{spec}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guard-unlearn",
        description="Train a LoRA adapter that makes the base model forget one target.",
        epilog=_keys_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recipe = parser.add_mutually_exclusive_group(required=True)
    recipe.add_argument("--method", help=f"one of {', '.join(method_names())}")
    recipe.add_argument(
        "--preset", help=f"a named recipe (method and settings): {', '.join(PRESETS)}"
    )
    parser.add_argument("--target", required=True, help="registry target id, or a .json spec")
    parser.add_argument("--out", required=True, help="folder for the PEFT adapter and report.json")
    parser.add_argument("--model", help="base model folder (default: the converted default model)")
    parser.add_argument(
        "--db",
        help="the registry: a SQLite file (default: <cache dir>/guard.db) or the "
        "postgresql:// URL the servers share",
    )
    parser.add_argument("--steps", type=int, help="optimizer steps (config field `steps`)")
    parser.add_argument("--lr", type=float, help="learning rate (config field `lr`)")
    parser.add_argument("--seed", type=int, help="random seed (config field `seed`)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=25,
        help="steps between checkpoints in <out>/checkpoint; the same command run again "
        "resumes there (0: none)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        help="judge the adapter every N steps and keep the best step (0: train every step; "
        "default: the preset's, else 0). It is judged on the last 3 of the spec's "
        "retain_targets, held out of training, and on everyday requests",
    )
    parser.add_argument(
        "--patience",
        type=int,
        help="judgings without a better step before training stops (default: the preset's, else 2)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="how far the loss on other people's and everyday texts may rise (relative)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any method hyper-parameter by its config field name; repeatable",
    )
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--set` pairs (strings, typed later by the config) and the typed shortcut flags."""
    out: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(ERR_SET.format(item=item))
        out[key.strip()] = value
    for key in ("steps", "lr", "seed"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    return out


def load_spec(target: str, db: str | None) -> dict[str, Any]:
    """A spec from a .json file, or the stored spec of a registry target id."""
    if target.endswith(".json"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(ERR_NO_FILE.format(path=target))
        try:
            spec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(ERR_BAD_JSON.format(path=target, reason=exc)) from None
        if not isinstance(spec, dict):
            raise ValueError(ERR_BAD_JSON.format(path=target, reason=type(spec).__name__))
        return spec
    from guard_server.models import cache_dir
    from guard_server.store import SQLiteStore, open_store
    from logits_processors.location import is_postgres, sqlite_path

    location = db or str(cache_dir() / "guard.db")
    if is_postgres(location):
        store = open_store(location)  # a team's shared registry
    elif (path := sqlite_path(location)).is_file():
        store = SQLiteStore(path, readonly=True)
    else:
        raise ValueError(ERR_NO_DB.format(path=location))
    row = store.get(target)
    if row is None:
        raise ValueError(ERR_NO_TARGET.format(target=target, path=location))
    return row.spec


def resolve_model(model: str | None) -> str:
    if model is not None:
        if not (Path(model) / "config.json").is_file():
            raise ValueError(ERR_MODEL.format(path=model, reason="config.json missing"))
        return model
    from guard_server.models import convert_default_model, default_model_dir

    try:
        return str(convert_default_model())
    except (FileNotFoundError, OSError) as exc:
        raise ValueError(ERR_MODEL.format(path=str(default_model_dir()), reason=exc)) from None


def judged(
    method: Any,
    values: dict[str, Any],
    spec: dict[str, Any],
    model_dir: str,
    stop: tuple[int, int, float],
) -> tuple[Any, dict[str, Any]]:
    """Early stopping for `spec` (`monitor.spec_monitor`), judged every `stop[0]` steps with
    patience `stop[1]` and loss tolerance `stop[2]`, and the spec to train on."""
    from functools import partial

    from transformers import AutoTokenizer

    from guard_server.unlearn.monitor import everyday_texts, spec_monitor
    from guard_server.unlearn.trainer import EarlyStop

    answer = method.from_overrides(values).good_answer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    everyday = partial(everyday_texts, model_dir)
    every, patience, tolerance = stop
    monitor, spec = spec_monitor(method.name, answer, spec, tokenizer, everyday, tolerance)
    return EarlyStop(monitor, every, patience), spec


def main(argv: list[str] | None = None) -> None:
    """Parse, check everything cheap first (exit 2 on a usage error), train, print the report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        preset = get_preset(args.preset) if args.preset else None
        method = get_method(preset.method if preset else args.method)
        settings = {**(preset.settings if preset else {}), **overrides(args)}
        config = make_config(method.config_cls, settings, method.name)
        spec = load_spec(args.target, args.db) | (preset.spec if preset else {})
        from guard_server.unlearn.data import forget_pairs, retain_pairs

        forget_pairs(spec)  # validates the spec before the model is loaded
        retain_pairs(spec)
        if args.checkpoint_every < 0:
            raise ValueError("--checkpoint-every must be 0 or more")
        stop = {"every": 0, "patience": 2, **(preset.early_stop if preset else {})}
        every = stop["every"] if args.eval_every is None else args.eval_every
        patience = stop["patience"] if args.patience is None else args.patience
        if every < 0 or patience < 1:
            raise ValueError("--eval-every must be 0 or more, and --patience 1 or more")
        model_dir = resolve_model(args.model)
        values = dataclasses.asdict(config)
        early_stop = None
        if every:
            stop_at = (every, patience, args.tolerance)
            early_stop, spec = judged(method, values, spec, model_dir, stop_at)
    except ValueError as exc:
        parser.error(str(exc))
    from guard_server.unlearn.trainer import OtherRunCheckpoint, train

    try:
        report = train(
            method.name, values, spec, model_dir, args.out, args.checkpoint_every, early_stop
        )
    except OtherRunCheckpoint as exc:
        parser.error(str(exc))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
