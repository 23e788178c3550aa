"""Train one unlearning LoRA adapter offline (CPU, float32) and save it in PEFT format."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from guard_server.unlearn import get_method
from guard_server.unlearn.data import UnlearnData

if TYPE_CHECKING:
    from peft import PeftModel
    from torch import nn

    from guard_server.unlearn.base import UnlearnConfig

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ERR_NO_MODULES = "the model has none of the LoRA target modules {modules}"


def lora_model(model: nn.Module, config: UnlearnConfig) -> PeftModel:
    """Wrap `model` with a fresh LoRA adapter on whichever of LORA_MODULES it has."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in LORA_MODULES if m in present]
    if not targets:
        raise ValueError(ERR_NO_MODULES.format(modules=list(LORA_MODULES)))
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def train(
    method_name: str,
    config_overrides: dict[str, Any],
    spec: dict[str, Any],
    model_dir: str,
    out_dir: str,
) -> dict[str, Any]:
    """Unlearn `spec` from the model in `model_dir`; write the adapter and report.json.

    Args:
        method_name: a registered method ("ga", "npo", ...).
        config_overrides: the method's hyper-parameters by field name (typed or strings).
        spec: the forget target {name, aliases, documents, examples, keywords}.
        model_dir: a Hugging Face causal-LM folder (the default model's, usually).
        out_dir: where the PEFT adapter (adapter_config.json, weights) and report go.
    """
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    started = time.perf_counter()
    method = get_method(method_name).from_overrides(config_overrides)
    config = method.config
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = UnlearnData.build(spec, tokenizer, config.max_length, method.good_answer, config.seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = lora_model(base, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    logs: list[dict[str, float]] = []
    trained = time.perf_counter()
    with tqdm(range(config.steps), desc=f"unlearn[{method.name}]", unit="step") as bar:
        for _ in bar:
            logs.append(method.step(model, data.batch(config.batch_size), optimizer))
            bar.set_postfix(loss=f"{logs[-1]['loss']:.4f}")
    train_seconds = time.perf_counter() - trained
    out = Path(out_dir)
    model.save_pretrained(out)
    adapter_bytes = sum(f.stat().st_size for f in out.glob("adapter_model.*"))
    report = {
        "method": method.name,
        "target": spec.get("name"),
        "config": dataclasses.asdict(config),
        "model_dir": str(model_dir),
        "adapter_dir": str(out.resolve()),
        **data.sizes(),
        "trainable_params": sum(p.numel() for p in params),
        "losses": [step["loss"] for step in logs],
        "logs": logs,
        "train_seconds": round(train_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "adapter_bytes": adapter_bytes,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
