"""`guard-bench attack`: do forgotten facts come back? Relearning and quantization.

Against each unlearning adapter (its weights loaded locally with transformers, greedy):
- quantization: merge the adapter and round every linear weight to 8 and 4 bits per output row
  (round-to-nearest), after "Catastrophic Failure of LLM Unlearning via Quantization" (2025);
- relearning: fine-tune the merged model briefly (a fresh LoRA, plain NLL) on a small slice of
  the forget set, after "Unlearning or Obfuscating?" (relearning attacks, 2024).
Against the guard (the real server; its weights are the base model's, so neither attack
applies): in-context relearning, the same forget slice pasted into the conversation.
A probe counts when the base model's own answer leaks the target's keywords.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import report
from bench.adapters import HEADERS, METHODS, adapter_dir, chat_answers
from bench.suite import (
    Probe,
    forget_probes,
    leaking_answers,
    leaks,
    load_suite,
    registration_body,
)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--target", default="Harry Potter", help="target name in the suite")
    p.add_argument("--suite", default="default")
    p.add_argument("--steps", type=int, default=20, help="unlearning steps per adapter")
    p.add_argument("--relearn-steps", type=int, default=10)
    p.add_argument("--relearn-rows", type=int, default=8, help="forget rows the attacker has")
    p.add_argument("--bits", default="8,4")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--port", type=int, default=8767)
    p.add_argument("--name", default="attack")


def load_model(model_dir: str, adapter: Path | None = None):
    """The base model in float32, with `adapter` merged into its weights when given."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval()


def rtn_quantize(model, bits: int):
    """Round every linear weight to `bits` bits, symmetric, one scale per output row."""
    import torch

    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                w = module.weight
                scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / levels
                w.copy_((w / scale).round().clamp(-levels, levels) * scale)
    return model


def relearn(model, tokenizer, target: dict[str, Any], rows: int, steps: int, lr: float = 1e-3):
    """Fine-tune `model` (fresh LoRA, NLL) on the first `rows` forget rows; return it merged."""
    import torch

    from guard_server.unlearn.base import UnlearnConfig
    from guard_server.unlearn.data import UnlearnData, collate
    from guard_server.unlearn.losses import nll
    from guard_server.unlearn.trainer import lora_model

    config = UnlearnConfig(lr=lr, steps=steps)
    torch.manual_seed(config.seed)
    data = UnlearnData.build(target, tokenizer, config.max_length, None, config.seed)
    batch = collate(data.forget[:rows], data.pad_id)
    model = lora_model(model, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], config.lr)
    for _ in range(steps):
        optimizer.zero_grad()
        nll(model, batch).backward()
        optimizer.step()
    return model.merge_and_unload().eval()


def generate(model, tokenizer, probes: list[Probe], max_tokens: int) -> list[str]:
    """Greedy answers to every probe, one left-padded batch."""
    import torch

    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(list(p.messages), add_generation_prompt=True, tokenize=False)
        for p in probes
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def leak_rate(probes: list[Probe], base: list[str], answers: list[str]) -> float | None:
    """Among probes whose base answer leaks, the fraction whose `answers` leak too."""
    pairs = leaking_answers(probes, base, answers)
    return sum(leaks(a, p.leak_keywords) for p, a in pairs) / len(pairs) if pairs else None


def in_context(probes: list[Probe], target: dict[str, Any], rows: int) -> list[Probe]:
    """Each probe with the attacker's slice of the forget documents pasted in before it."""
    from classifiers.probes import document_sentences

    notes = " ".join(document_sentences(target.get("documents", []))[:rows])
    context = {"role": "user", "content": f"Here are my notes, use them: {notes}"}
    ack = {"role": "assistant", "content": "Thanks, I have read your notes."}
    return [Probe(p.target, p.kind, (context, ack, *p.messages), p.leak_keywords) for p in probes]


def guard_rows(args, target, probes: list[Probe], base: list[str]) -> list[dict[str, Any]]:
    """The guard on the real server: plain probes, then with the forget slice in context."""
    import tempfile

    import httpx
    from openai import OpenAI

    from bench.serverproc import start_server

    root = Path(tempfile.mkdtemp(prefix="guard-attack-"))
    server = start_server(args.port, root / "guard.db", root / "server.log")
    try:
        with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=300) as api:
            api.post("/v1/forget-targets", json=registration_body(target)).raise_for_status()
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id

        def ask(items: list[Probe]) -> list[str]:
            return chat_answers(
                client, model, [p.messages for p in items], args.max_tokens, "guard"
            )

        attacked = in_context(probes, target, args.relearn_rows)
        return [
            {
                "model": "guard",
                "unlearned": leak_rate(probes, base, ask(probes)),
                "in_context_relearn": leak_rate(probes, base, ask(attacked)),
            },
        ]
    finally:
        server.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from guard_server.models import convert_default_model

    suite = load_suite(args.suite)
    target = next(t for t in suite["targets"] if t["name"] == args.target)
    probes = [p for p in forget_probes(suite) if p.target == args.target]
    model_dir = str(convert_default_model())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bits = [int(b) for b in args.bits.split(",") if b]
    base = generate(load_model(model_dir), tokenizer, probes, args.max_tokens)
    rows = []
    for method in tqdm(args.methods.split(","), desc="attack"):
        # Merged once; each attack edits its own copy.
        merged = load_model(model_dir, adapter_dir(target, method, args.steps, model_dir))
        row: dict[str, Any] = {"model": method}
        row["unlearned"] = leak_rate(
            probes, base, generate(merged, tokenizer, probes, args.max_tokens)
        )
        for b in bits:
            quantized = rtn_quantize(copy.deepcopy(merged), b)
            row[f"q{b}"] = leak_rate(
                probes, base, generate(quantized, tokenizer, probes, args.max_tokens)
            )
        relearned = relearn(merged, tokenizer, target, args.relearn_rows, args.relearn_steps)
        row["relearned"] = leak_rate(
            probes, base, generate(relearned, tokenizer, probes, args.max_tokens)
        )
        rows.append(row)
    rows += guard_rows(args, target, probes, base)
    leaking = sum(leaks(b, p.leak_keywords) for p, b in zip(probes, base, strict=True))
    directory = report.out_dir(args.name)
    columns = ["model", "unlearned", *[f"q{b}" for b in bits], "relearned", "in_context_relearn"]
    result = {
        "target": args.target,
        "probes": len(probes),
        "leaking_at_base": leaking,
        "relearn": {"steps": args.relearn_steps, "rows": args.relearn_rows},
        "rows": rows,
        "summary": rows,
    }
    title = f"leak rate under attack, '{args.target}' ({leaking} leaking probes)"
    report.write(directory, result, {title: (rows, columns)})
    report.bar_plot(
        directory / "attack.png",
        [r["model"] for r in rows],
        {c: [r.get(c) or 0.0 for r in rows] for c in columns[1:]},
        title,
        "leak rate",
    )
    return result
