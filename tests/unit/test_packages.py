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
