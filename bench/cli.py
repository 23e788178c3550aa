"""`guard-bench`: forgetting, utility and cost of the guard, against baselines."""

from __future__ import annotations

import argparse
import json
import sys

from bench import (
    adapters,
    attack,
    detect,
    forget,
    fuzz,
    kernel,
    load,
    overrefusal,
    registration,
    replicas,
    replot,
    rwku,
    rwku_adapters,
    rwku_heldout,
    throughput,
)

COMMANDS = {
    "forget": (forget, "leak/retain/honesty of a server on a probe suite"),
    "throughput": (throughput, "guarded vs unguarded vs bad_words tokens/s, one engine"),
    "detect": (detect, "detection latency against the number of targets"),
    "kernel": (kernel, "the fused forget kernel against its torch twin, per batch size"),
    "load": (load, "unflagged chats under concurrent load: plain vLLM vs the guard server"),
    "replicas": (replicas, "registration on replica A to effective on replica B (PostgreSQL)"),
    "rwku": (rwku, "RWKU probes and protocol, before and after registering N targets"),
    "overrefusal": (overrefusal, "XSTest and everyday questions flagged with N targets registered"),
    "register": (registration, "registration-to-effective latency and kill -9 survival"),
    "rwku-adapters": (rwku_adapters, "unlearning adapters on RWKU: sweep, frontier rows, plot"),
    "rwku-heldout": (rwku_heldout, "one adapter recipe on RWKU people it was not tuned on"),
    "adapters": (adapters, "each unlearning method's adapter served beside the guard"),
    "attack": (attack, "relearning and quantization attacks on adapters and the guard"),
    "fuzz": (fuzz, "schemathesis over every route: no server error (5xx)"),
    "replot": (replot, "redraw plots from committed results (throughput, rwku, adapters)"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="guard-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        module.add_args(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    result = COMMANDS[args.command][0].run(args)
    summary = result.get("overall", result.get("summary", {}))
    json.dump(summary, sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
