"""`guard-server serve`: vLLM's own serve flags plus the guard's, with embedded defaults."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

from classifiers.encoder import BACKENDS as ENCODER_BACKENDS
from guard_server.auth import ADMIN_KEY_ENV, AdminKeys
from guard_server.models import cache_dir, default_embedding_model_dir, default_model_dir

if TYPE_CHECKING:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

PROCESSOR_FQCN = "logits_processors.forget:ForgetLogitsProcessor"
# The same processor for Model Runner V2 (vLLM's default on CUDA), which rejects V1 ones.
PROCESSOR_V2_FQCN = "logits_processors.forget_v2:ForgetLogitsProcessorV2"
DEFAULT_SERVED_NAME = "SmolLM2-135M-Instruct"


CPU_DTYPE_ENV = "GUARD_CPU_DTYPE"
ERR_SPECULATIVE = (
    "guard-server: --speculative-config is not supported: the answer watch reads an answer "
    "one written token at a step, and a draft's tokens would complete a name it never read"
)


def engine_defaults() -> dict[str, object]:
    """Engine options for a small CPU host; none on a GPU, where vLLM's own apply (CUDA
    graphs, the model's context, its memory fraction).

    The CPU backend reserves `gpu_memory_utilization` of a NUMA node for the KV cache, which
    fails on small machines; a fixed 1 GiB is ample for a 135M model at 2k context. A CPU
    with no native bfloat16 (AVX2 only) emulates it: prefill runs ~8x slower than in float32,
    so such hosts compute in float32. `GUARD_CPU_DTYPE` sets the CPU's dtype instead (the
    test suite's engines take it too: the suite run as on a CPU of the other kind).
    """
    import torch

    if torch.cuda.is_available():
        return {}
    return {
        "max_model_len": 2048,
        "enforce_eager": True,
        "kv_cache_memory_bytes": 1 << 30,
        "dtype": os.environ.get(CPU_DTYPE_ENV) or ("auto" if native_bf16() else "float32"),
    }


def native_bf16() -> bool:
    import torch

    if torch.cuda.is_available():
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def add_guard_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the guard's own flags to a parser that already holds vLLM's serve flags. Flags
    whose default is resolved later (`finalize_args`) are left out of the namespace until
    then (`SUPPRESS`): vLLM's help prints every default, and one of them is a secret."""
    group = parser.add_argument_group("guard")
    group.add_argument(
        "--embedding-model",
        default=argparse.SUPPRESS,
        help="sentence-transformers model folder (default: all-MiniLM-L6-v2 shipped on PyPI)",
    )
    group.add_argument(
        "--encoder-backend",
        choices=ENCODER_BACKENDS,
        default="auto",
        help="run the embedding model through ONNX Runtime (auto: when its export matches "
        "torch, the default) or torch",
    )
    group.add_argument(
        "--admin-key",
        default=argparse.SUPPRESS,
        help=f"bearer key for the admin API, named 'admin' in the audit trail (default: "
        f"${ADMIN_KEY_ENV}; never printed)",
    )
    group.add_argument(
        "--admin-keys-file",
        default=argparse.SUPPRESS,
        help='JSON file of named admin keys, {"alice": "<key>", "ci": "<key>"}: each admin '
        "is named in the audit trail",
    )
    group.add_argument(
        "--engine-nice",
        type=int,
        choices=range(20),
        metavar="{0..19}",
        default=argparse.SUPPRESS,
        help="nice value of the engine's processes, so screening is not queued behind "
        "generation on shared cores (default: 10 on a CPU host, 0 on a GPU)",
    )
    group.add_argument(
        "--learn-associations",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask the served model, in the background, what it associates with each target "
        "(works, roles, places, other names), so a question that points at a target through "
        "them is screened too (a few short answers per target)",
    )
    group.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="forget-target registry: a SQLite file in WAL mode (default: "
        "$GUARD_CACHE_DIR/guard.db) or a postgresql://user@host:port/dbname URL shared by "
        "several replicas",
    )
    return parser


def make_parser() -> FlexibleArgumentParser:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(
        prog="guard-server serve",
        description="OpenAI-compatible vLLM server with generation-time unlearning.",
    )
    parser = make_arg_parser(parser)
    add_guard_args(parser)
    # Defaults that make `guard-server serve` work on a 2-core CPU machine out of the box.
    parser.set_defaults(
        model=None,
        host="127.0.0.1",
        **engine_defaults(),
    )
    return parser


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve defaults that depend on other flags; always registers the forget processor."""
    if getattr(args, "model_tag", None):
        args.model = args.model_tag
    if getattr(args, "speculative_config", None):
        raise SystemExit(ERR_SPECULATIVE)
    args.embedded_model = not args.model
    if not args.model:
        args.model = str(default_model_dir())
        if args.served_model_name is None:
            args.served_model_name = [DEFAULT_SERVED_NAME]
    args.admin_keys = AdminKeys.from_options(
        getattr(args, "admin_key", None), getattr(args, "admin_keys_file", None)
    )
    args.admin_key = None  # the keys live in `admin_keys` only, which never prints them
    if getattr(args, "embedding_model", None) is None:
        args.embedding_model = str(default_embedding_model_dir())
    if getattr(args, "db", None) is None:
        args.db = str(cache_dir() / "guard.db")
    if getattr(args, "engine_nice", None) is None:
        from guard_server.priority import default_engine_nice

        args.engine_nice = default_engine_nice()
    if args.enable_lora:
        # One slot always stays empty (see guard_server.adapters): base rows stay unmodified.
        static = len(args.lora_modules or [])
        args.max_loras = max(args.max_loras or 1, static + 1, 2)
    processors = list(args.logits_processors or [])
    if PROCESSOR_FQCN not in processors:
        processors.append(PROCESSOR_FQCN)
    args.logits_processors = processors
    return args


def match_model_runner(args: argparse.Namespace) -> argparse.Namespace:
    """Register the forget processor for the model runner vLLM will pick (its own decision:
    V2 on CUDA unless a feature needs V1; V1 on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return args  # MRV2 needs Triton's GPU backend: the CPU engine runs V1
    from vllm.engine.arg_utils import AsyncEngineArgs

    if AsyncEngineArgs.from_cli_args(args).create_engine_config().use_v2_model_runner:
        ours = {PROCESSOR_FQCN: PROCESSOR_V2_FQCN}
        args.logits_processors = [ours.get(p, p) for p in args.logits_processors]
    return args


def serve(argv: list[str]) -> None:
    import uvloop
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup

    from guard_server.server import run_server
    from guard_server.store import open_store
    from guard_server.surface import refuse_response_store
    from logits_processors.lifeline import SERVER_PID_ENV, server_pid_value
    from logits_processors.location import absolute
    from logits_processors.snapshot import SNAPSHOT_DB_ENV
    from logits_processors.watcher import WATCH_VOCAB_ENV, prepare_vocabulary

    cli_env_setup()
    refuse_response_store(os.environ)
    args = finalize_args(make_parser().parse_args(argv))
    if args.embedded_model:
        # The embedded default is on disk; a model named by its hub id is fetched as
        # `vllm serve` fetches it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    validate_parsed_serve_args(args)
    match_model_runner(args)
    # The engine worker (a spawned process) reads compiled targets from the same registry.
    open_store(args.db)  # creates the schema, and fails here, clearly, if it cannot
    os.environ[SNAPSHOT_DB_ENV] = absolute(args.db)
    # The answer watch's vocabulary, prepared here: the engine's forked workers load it.
    os.environ[WATCH_VOCAB_ENV] = str(
        prepare_vocabulary(args.tokenizer or args.model, cache_dir(), args.trust_remote_code)
    )
    # The engine's worker ends the engine when this process is gone, even by `kill -9`.
    os.environ[SERVER_PID_ENV] = server_pid_value()
    # Until uvicorn installs its own handlers (and after it restores the defaults), a SIGTERM
    # would end this process at once and orphan the engine core: unwind instead.
    signal.signal(signal.SIGTERM, _unwind)
    try:
        uvloop.run(run_server(args))
    finally:
        reap_children()


def _unwind(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def reap_children(grace_s: float = 15.0) -> None:
    """End every process this server started (the engine core and its workers): politely,
    then by force. vLLM shuts its engine down on a clean exit; this covers the others."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: guard-server serve [options]   (guard-server serve --help for options)")
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "serve":
        serve(rest)
    else:
        print(f"guard-server: unknown command {command!r}; expected 'serve'", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
