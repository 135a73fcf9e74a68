"""Train the demo's DPO stage: TRL's DPOTrainer with a LoRA adapter on top of the demo SFT model, on CPU.

The policy is the demo SFT model (base + assets/demo_adapter, merged) with a fresh LoRA adapter; the
reference is the same model with that adapter disabled, i.e. the SFT model. The pairs come from
slr_core/models/demo_preferences.py.

Usage: python scripts/train_dpo_adapter.py --seed 0 --steps 8 --pairs 32 --held-out 8 --out assets/demo_dpo_adapter
(needs scripts/requirements-dpo.txt)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from train_demo_adapter import save  # the same adapter files as the SFT adapter (scripts/ is on sys.path)

from slr_core.models import demo, demo_preferences

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HELD_OUT_SEED_OFFSET = 1_000_003


def parse_arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--held-out", type=int, default=8)
    # At step 0 the policy is the reference (no dropout), so the held-out loss is ln 2 by construction;
    # measuring it costs as much as two training steps on this CPU, so it is optional.
    parser.add_argument("--eval-before", action="store_true")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("assets/demo_dpo_adapter"))
    return parser.parse_args()


def as_conversation(pairs: list[dict]):
    """The pairs as a datasets.Dataset in TRL's conversational preference format."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": pair["prompt"]}],
                "chosen": [{"role": "assistant", "content": pair["chosen"]}],
                "rejected": [{"role": "assistant", "content": pair["rejected"]}],
            }
            for pair in pairs
        ]
    )


def versions() -> dict:
    """Versions of the packages that shape the result."""
    names = ["torch", "transformers", "peft", "trl", "datasets", "safetensors"]
    found = {name: metadata.version(name) for name in names}
    return {"python": platform.python_version(), **found}


def machine_state() -> dict:
    """What the machine was doing: core count and load, so the wall time can be read fairly."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1_5_15": [round(x, 2) for x in load] if load else None,
        "niceness": os.nice(0) if hasattr(os, "nice") else None,
    }


def _metrics(history: list[dict], prefix: str) -> dict:
    keys = ("loss", "rewards/accuracies", "rewards/margins")
    found = [row for row in history if f"{prefix}loss" in row]
    if not found:
        return {}
    return {key: found[-1].get(f"{prefix}{key}") for key in keys}


def train(arguments: argparse.Namespace) -> dict:
    """Run DPO and return the record and the trained peft model."""
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(arguments.threads)
    random.seed(arguments.seed)
    torch.manual_seed(arguments.seed)
    started = time.time()
    state_before = machine_state()
    model, tokenizer = demo.load_demo_model("post", torch.float32, torch.device("cpu"))
    pairs = demo_preferences.build_pairs(arguments.seed, arguments.pairs)
    held_seed = arguments.seed + HELD_OUT_SEED_OFFSET
    held_out = demo_preferences.build_pairs(held_seed, arguments.held_out)
    lora = LoraConfig(
        r=arguments.rank,
        lora_alpha=arguments.alpha,
        lora_dropout=0.0,  # no dropout: the policy equals the reference at step 0, loss exactly ln 2
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory() as scratch:
        config = DPOConfig(
            output_dir=scratch,
            beta=arguments.beta,
            learning_rate=arguments.lr,
            lr_scheduler_type="constant",
            max_steps=arguments.steps,
            per_device_train_batch_size=arguments.batch_size,
            per_device_eval_batch_size=arguments.batch_size,
            max_length=arguments.max_length,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=arguments.seed,
            data_seed=arguments.seed,
            dataloader_num_workers=0,
            gradient_checkpointing=False,  # TRL's default recomputes every forward; memory is not short here
        )
        trainer = DPOTrainer(
            model=model,
            ref_model=None,  # with a peft_config, TRL's reference is the policy with its adapter disabled
            args=config,
            train_dataset=as_conversation(pairs),
            eval_dataset=as_conversation(held_out),
            processing_class=tokenizer,
            peft_config=lora,
        )
        before = trainer.evaluate() if arguments.eval_before else {}
        print("held-out before:", before or "not measured (policy = reference: loss ln 2)", flush=True)
        trainer.train()
        after = trainer.evaluate()
        print("held-out after:", after, flush=True)
        history = trainer.state.log_history
    train_losses = [row["loss"] for row in history if "loss" in row and "eval_loss" not in row]
    record = {
        "stage": "DPO on the demo SFT model (reference: the SFT model, adapter disabled)",
        "seed": arguments.seed,
        "steps": arguments.steps,
        "batch_size": arguments.batch_size,
        "lr": arguments.lr,
        "schedule": "constant",
        "beta": arguments.beta,
        "max_length": arguments.max_length,
        "lora": {
            "r": arguments.rank,
            "alpha": arguments.alpha,
            "dropout": 0.0,
            "target_modules": TARGET_MODULES,
            "saved_dtype": "bfloat16",
        },
        "data": {
            "pairs": len(pairs),
            "kinds": {k: sum(p["kind"] == k for p in pairs) for k in ("mode", "format")},
            "sha256": demo_preferences.pairs_sha256(pairs),
            "generator": "slr_core.models.demo_preferences.build_pairs(seed, pairs)",
        },
        "held_out": {
            "pairs": len(held_out),
            "seed": held_seed,
            "sha256": demo_preferences.pairs_sha256(held_out),
            "before": _metrics([before], "eval_"),
            "after": _metrics([after], "eval_"),
        },
        "loss": {"train_per_step": train_losses},
        "wall_time_s": round(time.time() - started, 1),
        "threads": arguments.threads,
        "machine_state": {"start": state_before, "end": machine_state()},
        "base_gguf_sha256": demo._gguf_package().EXPECTED_SHA256,
        "sft_adapter_fingerprint": demo.demo_fingerprint("post"),
        "versions": versions(),
        "command": "python " + shlex.join(sys.argv),
    }
    return {"record": record, "peft_model": trainer.model}


def main() -> None:
    """Train and save the demo DPO adapter."""
    arguments = parse_arguments()
    result = train(arguments)
    save(result["peft_model"], result["record"], arguments.out, base=demo.SFT_SPEC)
    print(json.dumps(result["record"]["held_out"]), f"wall {result['record']['wall_time_s']}s")


if __name__ == "__main__":
    main()
