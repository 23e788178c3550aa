"""Train one unlearning LoRA adapter offline (CPU, float32) and save it in PEFT format."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from guard_server.unlearn import get_method
from guard_server.unlearn.data import UnlearnData

if TYPE_CHECKING:
    from peft import PeftModel
    from torch import nn

    from guard_server.unlearn.base import UnlearnConfig

from guard_server.models import ADAPTER_CARD as CARD

CHECKPOINT = "checkpoint"  # a folder inside the output folder while training runs
ERR_OTHER_RUN = (
    "{path} holds a checkpoint of another run (other method, hyper-parameters, target or "
    "model); delete it or train into another --out"
)
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ERR_NO_MODULES = "the model has none of the LoRA target modules {modules}"


class OtherRunCheckpoint(ValueError):
    """The output folder holds a checkpoint that another run wrote."""


class EarlyStop:
    """Early stopping with best-weights restore, on a score of held-out data.

    `monitor(model)` returns a dict: `score` to maximise, or None when the model broke a
    constraint (it forgot too much of what it must keep), and anything else worth logging.
    Every `every` steps, step 0 included, the adapter is scored; the best-scoring adapter
    weights are kept, and training stops after `patience` scores without improvement. A None
    is a score without improvement: a method that first learns the easy shortcut (one answer
    for everyone) and then the distinction gets the steps to learn it.
    """

    def __init__(self, monitor: Callable[[nn.Module], dict[str, Any]], every: int, patience: int):
        for name, value in (("every", every), ("patience", patience)):
            if value < 1:
                raise ValueError(f"early stopping: {name} must be an integer >= 1, got {value!r}")
        self.monitor, self.every, self.patience = monitor, every, patience
        self.history: list[dict[str, Any]] = []
        self.best_step: int | None = None
        self.best_score = -math.inf
        self.best: dict[str, torch.Tensor] | None = None

    def due(self, step: int, last: int) -> bool:
        return step % self.every == 0 or step == last

    def check(self, step: int, model: PeftModel) -> bool:
        """Score the adapter as it is after `step` steps; True when training should stop."""
        from peft import get_peft_model_state_dict

        was_training = model.training
        model.eval()
        with torch.no_grad():
            result = self.monitor(model)
        model.train(was_training)
        score = result["score"]
        self.history.append({"step": step, **result})
        if (score is not None and score > self.best_score) or self.best is None:
            snapshot = get_peft_model_state_dict(model)
            self.best = {k: v.detach().clone() for k, v in snapshot.items()}
            self.best_step, self.best_score = step, -math.inf if score is None else score
        return sum(h["step"] > self.best_step for h in self.history) >= self.patience

    def settings(self) -> dict[str, int]:
        return {"every": self.every, "patience": self.patience}

    def restore(self, model: PeftModel) -> None:
        from peft import set_peft_model_state_dict

        if self.best is not None:
            set_peft_model_state_dict(model, self.best)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best_step": self.best_step, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.best_step, self.best = (
            state["history"],
            state["best_step"],
            state["best"],
        )
        scores = [h["score"] for h in self.history if h["step"] == self.best_step]
        self.best_score = scores[0] if scores and scores[0] is not None else -math.inf


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
    checkpoint_every: int = 25,
    early_stop: EarlyStop | None = None,
) -> dict[str, Any]:
    """Unlearn `spec` from the model in `model_dir`; write the adapter and report.json.

    Every `checkpoint_every` steps the run is saved in `out_dir/checkpoint`; a run started
    again with the same arguments resumes there and ends as the uninterrupted run would.

    Args:
        method_name: a registered method ("ga", "npo", ...).
        config_overrides: the method's hyper-parameters by field name (typed or strings).
        spec: the forget target {name, aliases, documents, examples, keywords}.
        model_dir: a Hugging Face causal-LM folder (the default model's, usually).
        out_dir: where the PEFT adapter (adapter_config.json, weights) and report go.
        checkpoint_every: steps between checkpoints (0: none).
        early_stop: scores held-out data during training; the best adapter is the one saved.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    started = time.perf_counter()
    method = get_method(method_name).from_overrides(config_overrides)
    config = method.config
    out = Path(out_dir)
    run = _fingerprint(method.name, config, spec, model_dir, early_stop)
    saved = _saved(out / CHECKPOINT, run)  # refused before any model is loaded
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = UnlearnData.build(spec, tokenizer, config.max_length, method.good_answer, config.seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = lora_model(base, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    session = _Run(model, optimizer, data, early_stop, out / CHECKPOINT, run, checkpoint_every)
    if saved:
        session.restore(saved)
    trained = time.perf_counter()
    if method.training_free:
        # Scored before and after the one edit: an edit that breaks a constraint leaves the
        # unchanged (zero) adapter as the best one.
        if early_stop is not None:
            early_stop.check(0, model)
        session.logs = [method.edit(model, data)]
        if early_stop is not None:
            early_stop.check(1, model)
    else:
        session.steps(method)
    logs = session.logs
    if early_stop is not None:
        early_stop.restore(model)
    train_seconds = time.perf_counter() - trained
    model.save_pretrained(out)
    adapter_bytes = sum(f.stat().st_size for f in out.glob("adapter_model.*"))
    report = {
        "method": method.name,
        "target": spec.get("name"),
        "config": dataclasses.asdict(config),
        # What the spec added to the retain set (a preset may set keep_related).
        "keep_related": spec.get("keep_related", 0),
        "retain_targets": [t.get("name") for t in spec.get("retain_targets", [])],
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
    if early_stop is not None:
        report["early_stop"] = {"history": early_stop.history, "best_step": early_stop.best_step}
    (out / CARD).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    return report


def _fingerprint(
    method: str,
    config: UnlearnConfig,
    spec: dict[str, Any],
    model_dir: str,
    early_stop: EarlyStop | None = None,
) -> str:
    run = {"method": method, "config": dataclasses.asdict(config), "spec": spec}
    if early_stop is not None:
        run["early_stop"] = early_stop.settings()
    run["model_dir"] = str(Path(model_dir).resolve())
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()


def _saved(path: Path, run: str) -> dict[str, Any] | None:
    """This run's checkpoint at `path`, or None without one; another run's is refused."""
    if not (path / "state.pt").exists():
        return None
    state = torch.load(path / "state.pt", weights_only=True)
    if state["run"] != run:
        raise OtherRunCheckpoint(ERR_OTHER_RUN.format(path=path))
    return state


@dataclass
class _Run:
    """A training run's moving parts, and where and how often it is checkpointed."""

    model: PeftModel
    optimizer: torch.optim.Optimizer
    data: UnlearnData
    early_stop: EarlyStop | None
    path: Path  # the checkpoint folder
    fingerprint: str
    every: int  # steps between checkpoints (0: none)
    logs: list[dict[str, float]] = field(default_factory=list)

    def steps(self, method) -> None:
        """The optimizer loop: `logs` grows by one entry per step (it may hold resumed steps)."""
        from tqdm import tqdm

        config, stop = method.config, self.early_stop
        desc = f"unlearn[{method.name}]"
        with tqdm(total=config.steps, initial=len(self.logs), desc=desc, unit="step") as bar:
            if stop is not None and not self.logs and stop.check(0, self.model):
                return
            while len(self.logs) < config.steps:
                batch = self.data.step_batch(config)
                self.logs.append(method.step(self.model, batch, self.optimizer))
                bar.update()
                bar.set_postfix(loss=f"{self.logs[-1]['loss']:.4f}")
                done = len(self.logs)
                due = stop is not None and stop.due(done, config.steps)
                if due and stop.check(done, self.model):
                    return
                if self.every and done % self.every == 0 and done < config.steps:
                    self.checkpoint()

    def checkpoint(self) -> None:
        """Written to a temporary file, then renamed: an interruption never leaves half of one."""
        from peft import get_peft_model_state_dict

        self.path.mkdir(parents=True, exist_ok=True)
        state = {
            "run": self.fingerprint,
            "logs": self.logs,
            "lora": get_peft_model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "data": self.data.state_dict(),
            "early_stop": self.early_stop.state_dict() if self.early_stop is not None else None,
        }
        torch.save(state, self.path / "state.pt.tmp")
        os.replace(self.path / "state.pt.tmp", self.path / "state.pt")

    def restore(self, state: dict[str, Any]) -> None:
        """Put a checkpoint's weights, optimizer, sampling and early-stopping state back."""
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data.load_state_dict(state["data"])
        if self.early_stop is not None and state.get("early_stop"):
            self.early_stop.load_state_dict(state["early_stop"])
        self.logs = list(state["logs"])
