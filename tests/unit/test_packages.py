"""Our top-level packages share names with PyPI projects: make sure ours are the ones loaded."""

import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ["guard_server", "classifiers", "logits_processors", "kernels", "bench"]


@pytest.mark.parametrize("name", OURS)
def test_package_resolves_to_this_repo(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__


def test_no_unrelated_distribution_provides_our_names():
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"] == "unlearning-guard-server":
            continue
        top = dist.read_text("top_level.txt") or ""
        assert not set(top.split()) & set(OURS), dist.metadata["Name"]


def test_heavy_libraries_do_not_import_ours_by_mistake(tmp_path):
    # transformers probes an optional PyPI `kernels` (hub kernels) by find_spec; ours must not
    # be taken for it, and importing the stack must not pull in any of our packages.
    code = (
        "import sys, json, transformers, vllm, sentence_transformers, peft\n"
        "from transformers.utils.import_utils import is_kernels_available\n"
        "from vllm.v1.sample import logits_processor\n"
        f"print(json.dumps([is_kernels_available(), [n for n in {OURS!r} if n in sys.modules]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    kernels_available, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert kernels_available is False
    assert imported == []


def _import_graph() -> dict[str, set[str]]:
    """Every import between our modules, those inside functions included (a lazy import
    still ties two modules together)."""
    import ast

    modules = {}
    for package in OURS:
        for file in (ROOT / package).rglob("*.py"):
            parts = file.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, file in modules.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                target = owner(name)
                # A module's own package (its __init__) is loaded before it anyway.
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def test_no_import_cycle_between_our_modules():
    graph = _import_graph()
    done: set[str] = set()

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            found = cycle_from(target, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m, []))]
    assert not cycles, " -> ".join(cycles[0])


# The server's HTTP side: offline training (guard-unlearn) must run without any of it.
HTTP_SIDE = {
    f"guard_server.{name}"
    for name in [
        "server",
        "admin",
        "routes",
        "surface",
        "engine_guard",
        "limits",
        "batcher",
        "detection",
        "errors",
        "adapters",
        "protocol",
        "auth",
        "metrics",
        "priority",
        "prompts",
        "verify",
        "cli",
    ]
}


def test_offline_training_imports_nothing_of_the_http_side():
    graph = _import_graph()
    assert graph.keys() >= HTTP_SIDE, sorted(HTTP_SIDE - graph.keys())  # a renamed module
    reached, todo = set(), [m for m in graph if m.startswith("guard_server.unlearn")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    assert not reached & HTTP_SIDE, sorted(reached & HTTP_SIDE)
