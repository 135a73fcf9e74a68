"""CRC prompts, the valid-set rule and the Q/D formulas on hand-made numbers."""

import math

import pytest
import torch

from slr_core.crc.prompts import (
    DIGIT_TEMPLATE,
    CRCPrompt,
    default_prompts,
    encode_prompts,
    score_logits,
    single_character_tokens,
)
from slr_core.errors import PromptSetError


def test_default_prompts_follow_the_paper():
    prompts = default_prompts()
    assert len(prompts) == 40
    digits, letters = prompts[:20], prompts[20:]
    assert all(p.instruction.startswith("Generate a random integer in the range [") for p in digits)
    assert all(p.instruction.startswith("Generate a random letter from ") for p in letters)
    assert all(p.instruction.endswith("Do not include anything else in your reply.") for p in prompts)
    assert default_prompts() == prompts  # fixed seed
    first = digits[0]
    low, high = int(first.valid[0]), int(first.valid[-1])
    assert first.instruction == DIGIT_TEMPLATE.format(low=low, high=high)


def test_valid_set_counts_every_whitespace_variant(tiny_pair):
    tokenizer = tiny_pair.tokenizer
    index = single_character_tokens(tokenizer)
    pieces = {tokenizer.convert_ids_to_tokens(i) for i in index["5"]}
    assert {"5", "▁5"} <= pieces  # bare and space-prefixed variants both count
    assert all(tokenizer.decode([i]).strip() == "A" for i in index["A"])
    assert not set(index.get("a", [])) & set(index["A"])  # case matters


def test_quality_and_diversity_on_known_numbers(tiny_pair):
    tokenizer = tiny_pair.tokenizer
    encoded = encode_prompts(tokenizer, [CRCPrompt("Pick 4 or 5.", ("4", "5"))])
    index = single_character_tokens(tokenizer)
    logits = torch.full((1, len(tokenizer)), -1e9)
    # 0.3 on "4" (split over its variants), 0.3 on "5", 0.4 on an invalid token.
    four, five = index["4"], index["5"]
    probs = torch.zeros(len(tokenizer))
    probs[four] = 0.3 / len(four)
    probs[five] = 0.3 / len(five)
    invalid = next(i for i in range(len(tokenizer)) if i not in four + five)
    probs[invalid] = 0.4
    logits = torch.log(probs.clamp_min(1e-30))[None]
    quality, diversity = score_logits(logits, encoded, [0])[0].tolist()
    assert quality == pytest.approx(0.6, abs=1e-6)
    assert diversity == pytest.approx(math.log(2), abs=1e-6)


def test_answer_missing_from_vocabulary_is_a_clear_error(tiny_pair):
    with pytest.raises(PromptSetError, match="No token sequence of this tokenizer says"):
        encode_prompts(tiny_pair.tokenizer, [CRCPrompt("Pick a Greek letter.", ("λ",))])


def test_prompt_ids_carry_the_chat_template(tiny_pair):
    encoded = encode_prompts(tiny_pair.tokenizer, default_prompts()[:1])
    tokenizer = tiny_pair.tokenizer
    ids = encoded.input_ids[0]
    turn = tokenizer.convert_tokens_to_ids("<start_of_turn>")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids.count(turn) == 2  # the user turn, then the opened model turn
