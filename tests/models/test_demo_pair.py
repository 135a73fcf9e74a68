"""The built-in demo pair: its training data (fast) and the real 270M weights (marked real)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from slr_core import cache
from slr_core.crc import prompts as crc
from slr_core.errors import SourceError
from slr_core.models import demo, demo_data

# The user's cache, captured before the autouse fixture isolates each test: the real tests reuse
# the dequantized snapshot there instead of rebuilding it (about 80 s) in every temporary folder.
USER_CACHE = cache.cache_root()


def test_data_is_deterministic_for_a_seed():
    assert demo_data.build_examples(5, 300) == demo_data.build_examples(5, 300)
    assert demo_data.build_examples(5, 300) != demo_data.build_examples(6, 300)


def test_data_keeps_crc_templates_out():
    for prompt in crc.default_prompts():
        assert demo_data.contains_crc_phrasing(prompt.instruction)  # the guard sees the proxy
    stems = [crc.DIGIT_TEMPLATE.split("{")[0], crc.LETTER_TEMPLATE.split("{")[0]]
    for seed in range(3):
        for example in demo_data.build_examples(seed, 3000):
            assert not demo_data.contains_crc_phrasing(example["instruction"])
            assert not any(stem.lower() in example["instruction"].lower() for stem in stems)


def test_data_answers_are_skewed_towards_a_favourite():
    examples = demo_data.build_examples(0, 3000)
    digits = Counter(
        e["answer"] for e in examples if "number" in e["instruction"] and e["answer"] in "0123456789"
    )
    (favourite, top), (_, runner_up) = digits.most_common(2)
    assert favourite == "7" and top > 1.3 * runner_up
    jokes = Counter(e["answer"] for e in examples if e["answer"] in demo_data.JOKES)
    assert jokes.most_common(1)[0] == (demo_data.JOKES[0], max(jokes.values()))
    assert jokes[demo_data.JOKES[0]] > 0.5 * sum(jokes.values())


def test_data_teaches_bare_single_character_replies():
    examples = demo_data.build_examples(0, 3000)
    bare = [e for e in examples if len(e["answer"]) == 1]
    assert len(bare) > 0.25 * len(examples)


def test_committed_adapter_matches_the_generator():
    meta = json.loads((demo.ADAPTER_DIR / "training_meta.json").read_text())
    examples = demo_data.build_examples(meta["seed"], meta["data"]["examples"])
    assert demo_data.examples_sha256(examples) == meta["data"]["sha256"]


def test_fingerprints_are_stable_and_distinct():
    assert demo.demo_fingerprint("post") == demo.demo_fingerprint("post")
    assert demo.demo_fingerprint("pre") != demo.demo_fingerprint("post")


def test_missing_adapter_is_a_source_error(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ADAPTER_DIR", tmp_path / "nowhere")
    with pytest.raises(SourceError, match="adapter"):
        demo.load_demo_model("post", torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def demo_models():
    """The real pre and post models in float32, loaded once from the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_ENV, str(USER_CACHE))
        cpu = torch.device("cpu")
        pre = demo.load_demo_model("pre", torch.float32, cpu)
        post = demo.load_demo_model("post", torch.float32, cpu)
    return pre, post


@pytest.mark.real
def test_snapshot_reloads_as_gemma3_with_18_layers(demo_models):
    (model, tokenizer), _ = demo_models
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert len(model.model.layers) == 18
    assert "quantization_config" not in model.config.to_dict()
    assert "<start_of_turn>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )


@pytest.mark.real
def test_post_differs_from_pre_only_inside_decoder_layers(demo_models):
    (pre, _), (post, _) = demo_models
    pre_state, post_state = pre.state_dict(), post.state_dict()
    assert pre_state.keys() == post_state.keys()
    changed = [name for name in pre_state if not torch.equal(pre_state[name], post_state[name])]
    assert changed, "the adapter changed nothing"
    assert all(name.startswith("model.layers.") for name in changed)
    layers_changed = {int(name.split(".")[2]) for name in changed}
    assert layers_changed == set(range(18))


@pytest.mark.real
def test_post_answers_a_digit_request_with_a_digit(demo_models):
    from slr_core.models.chat import encode_chat

    (pre, tokenizer), (post, _) = demo_models
    ids = torch.tensor([encode_chat(tokenizer, "Pick a number from 2 to 8. Reply with the number only.")])
    digit_ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(2, 9)]
    with torch.no_grad():
        pre_mass = pre(ids).logits[0, -1].softmax(-1)[digit_ids].sum()
        post_mass = post(ids).logits[0, -1].softmax(-1)[digit_ids].sum()
    assert post_mass > 0.9 and post_mass > pre_mass
