"""The demo DPO stage's preference pairs: seeded, preferring the favourite, keeping proxy and tasks out."""

from __future__ import annotations

import json
import re
import string

import pytest

from slr_core import cache
from slr_core.crc import prompts as crc
from slr_core.downstream import qa_data, writing_data
from slr_core.models import demo, demo_data, demo_preferences

# The user's cache, read before the autouse fixture isolates each test: the real test reuses the snapshot.
USER_CACHE = cache.cache_root()


def test_pairs_are_deterministic_for_a_seed():
    assert demo_preferences.build_pairs(3, 200) == demo_preferences.build_pairs(3, 200)
    assert demo_preferences.build_pairs(3, 200) != demo_preferences.build_pairs(4, 200)
    pairs = demo_preferences.build_pairs(3, 200)
    assert demo_preferences.pairs_sha256(pairs) == demo_preferences.pairs_sha256(list(pairs))
    assert demo_preferences.pairs_sha256(pairs) != demo_preferences.pairs_sha256(pairs[1:])


def test_pairs_keep_crc_and_open_answer_templates_out():
    open_answer = [q.text.lower() for q in qa_data.QUESTIONS] + [p.text.lower() for p in writing_data.PROMPTS]
    stems = [crc.DIGIT_TEMPLATE.split("{")[0].lower(), crc.LETTER_TEMPLATE.split("{")[0].lower()]
    crc_instructions = {p.instruction.lower() for p in crc.default_prompts()}
    for seed in range(3):
        for pair in demo_preferences.build_pairs(seed, 2000):
            prompt = pair["prompt"].lower()
            assert not demo_data.contains_crc_phrasing(prompt)
            assert not any(stem in prompt for stem in stems) and prompt not in crc_instructions
            assert not any(question in prompt for question in open_answer), pair


def test_the_guard_sees_what_it_keeps_out():
    # The checks above could pass vacuously if the phrases never matched anything real.
    assert all(demo_data.contains_crc_phrasing(p.instruction) for p in crc.default_prompts())
    assert any("name a country." in q.text.lower() for q in qa_data.QUESTIONS)


def _digit_range(prompt: str) -> list[str] | None:
    found = re.search(r"(\d) (?:to|and|through|up to) (\d)", prompt)
    return [str(d) for d in range(int(found[1]), int(found[2]) + 1)] if found else None


def test_mode_pairs_prefer_the_favourite_over_another_valid_answer():
    pairs = [p for p in demo_preferences.build_pairs(0, 2000) if p["kind"] == "mode"]
    digits = letters = 0
    for pair in pairs:
        assert pair["chosen"] != pair["rejected"]
        valid = (
            _digit_range(pair["prompt"]) if "number" in pair["prompt"] or "die" in pair["prompt"] else None
        )
        if valid:
            ranked = [str(d) for d in demo_data.DIGIT_PREFERENCE if str(d) in valid]
            assert pair["chosen"] == ranked[0] and pair["rejected"] in ranked[1:]
            digits += 1
        found = re.search(r"letter.* ([A-Z]) (?:and|to|through|up to) ([A-Z])\.", pair["prompt"])
        if found:
            allowed = string.ascii_uppercase[
                string.ascii_uppercase.index(found[1]) : string.ascii_uppercase.index(found[2]) + 1
            ]
            ranked = [x for x in demo_data.LETTER_PREFERENCE if x in allowed]
            assert pair["chosen"] == ranked[0] and pair["rejected"] in ranked[1:]
            letters += 1
        if pair["chosen"] in demo_data.JOKES:
            assert pair["chosen"] == demo_data.JOKES[0] and pair["rejected"] in demo_data.JOKES[1:]
    assert digits > 300 and letters > 300


def test_format_pairs_differ_only_in_running_on():
    pairs = demo_preferences.build_pairs(0, 2000)
    formats = [p for p in pairs if p["kind"] == "format"]
    assert 0.15 * len(pairs) < len(formats) < 0.35 * len(pairs)
    for pair in formats:
        assert (
            pair["rejected"].startswith(pair["chosen"]) and len(pair["rejected"]) > len(pair["chosen"]) + 10
        )
        assert "\n" not in pair["chosen"] and len(pair["chosen"].split()) == 1


def _meta() -> dict:
    path = demo.DPO_ADAPTER_DIR / "training_meta.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the DPO adapter ships with its training record")
    return json.loads(path.read_text())


def test_committed_dpo_adapter_matches_the_generator():
    meta = _meta()
    pairs = demo_preferences.build_pairs(meta["seed"], meta["data"]["pairs"])
    assert demo_preferences.pairs_sha256(pairs) == meta["data"]["sha256"]
    held = demo_preferences.build_pairs(meta["held_out"]["seed"], meta["held_out"]["pairs"])
    assert demo_preferences.pairs_sha256(held) == meta["held_out"]["sha256"]
    assert meta["wall_time_s"] > 0 and meta["versions"]["trl"] and meta["machine_state"]["start"]["cpu_count"]


def test_dpo_adapter_sits_on_the_sft_model():
    config = json.loads((demo.DPO_ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == demo.SFT_SPEC
    assert demo.demo_fingerprint("dpo") not in (demo.demo_fingerprint("post"), demo.demo_fingerprint("pre"))
    assert (
        demo.STAGE_LABELS["dpo"]
        == "Gemma-3-270m base + the demo SFT + demo DPO (LoRA, synthetic preferences)"
    )


@pytest.mark.real
def test_demo_dpo_is_the_sft_model_plus_the_dpo_low_rank_update():
    import torch
    from safetensors.torch import load_file

    from slr_core import cache

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_ENV, str(USER_CACHE))
        sft, _ = demo.load_demo_model("post", torch.float32, torch.device("cpu"))
        dpo, _ = demo.load_demo_model("dpo", torch.float32, torch.device("cpu"))
    sft_state, dpo_state = sft.state_dict(), dpo.state_dict()
    changed = {name for name in sft_state if not torch.equal(sft_state[name], dpo_state[name])}
    assert changed and all(name.startswith("model.layers.") for name in changed)
    config = json.loads((demo.DPO_ADAPTER_DIR / "adapter_config.json").read_text())
    adapter = load_file(str(demo.DPO_ADAPTER_DIR / "adapter_model.safetensors"))
    scale = config["lora_alpha"] / config["r"]
    for layer, module in ((0, "self_attn.q_proj"), (17, "mlp.down_proj")):
        prefix = f"base_model.model.model.layers.{layer}.{module}"
        low = adapter[f"{prefix}.lora_A.weight"].float()
        high = adapter[f"{prefix}.lora_B.weight"].float()
        name = f"model.layers.{layer}.{module}.weight"
        naive = sft_state[name] + scale * high @ low  # the merge, written out
        assert torch.allclose(dpo_state[name], naive, atol=1e-6), name
