"""Prompt sets: shipped ones by name, a user's JSON file read and checked, hosted mode's size caps."""

from __future__ import annotations

import json

import pytest

from slr_core import inputs
from slr_core.crc.prompt_sets import (
    SET_NAMES,
    check_size,
    load_prompts,
    named_prompts,
    open_prompts,
    parse_prompt_set,
    prompt_set,
)
from slr_core.crc.prompts import CRCPrompt, default_prompts
from slr_core.errors import PromptSetError


def test_named_sets_and_files(tmp_path):
    assert SET_NAMES == ("paper", "open")
    assert prompt_set(None) == prompt_set("paper") == default_prompts()
    assert prompt_set(" open ") == named_prompts("open") == open_prompts()
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"instruction": "Name a side of a coin.", "valid": ["Heads", "Tails"]}]))
    assert prompt_set(str(path)) == [CRCPrompt("Name a side of a coin.", ("Heads", "Tails"))]
    with pytest.raises(PromptSetError, match="neither a shipped prompt set \\(paper, open\\) nor a file"):
        prompt_set("opne")
    with pytest.raises(PromptSetError, match="Unknown prompt set 'x'"):
        named_prompts("x")


def test_answers_of_any_length_round_trip(tmp_path):
    items = [
        {"instruction": "Pick A or B.", "valid": "AB"},  # the short form: one answer per character
        {"instruction": "Give a number from 1 to 12.", "valid": [str(n) for n in range(1, 13)]},
        {"instruction": "Name a US state beginning with New.", "valid": ["New York", "New Jersey"]},
    ]
    path = tmp_path / "good.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    loaded = load_prompts(path)
    assert loaded[0] == CRCPrompt("Pick A or B.", ("A", "B"))
    assert loaded[1].valid[0] == "1" and loaded[1].valid[9] == "10"  # a prefix pair is fine
    assert loaded[2].valid == ("New York", "New Jersey")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("{", "Cannot read prompt set"),
        ("[]", "expected a non-empty JSON list"),
        ([{"valid": "AB"}], "needs a string 'instruction'"),
        ([{"instruction": " ", "valid": "AB"}], "the 'instruction' is empty"),
        ([{"instruction": "x", "valid": []}], "'valid' must be a non-empty list of answers"),
        ([{"instruction": "x", "valid": ["A", ""]}], "every valid answer must be non-empty text, got ''"),
        ([{"instruction": "x", "valid": ["A", "  "]}], "every valid answer must be non-empty text"),
        ([{"instruction": "x", "valid": ["A", 7]}], "every valid answer must be non-empty text, got 7"),
        ([{"instruction": "x", "valid": [" New York"]}], "has whitespace around it; write it as 'New York'"),
        ([{"instruction": "x", "valid": ["Red", "Blue", "Red"]}], "'valid' lists ['Red'] more than once"),
        ([{"instruction": "x", "valid": "AA"}], "'valid' lists ['A'] more than once"),
        (
            [{"instruction": "x", "valid": "AB"}, {"instruction": "x ", "valid": "CD"}],
            "prompt 1: repeats the instruction of prompt 0",
        ),
    ],
)
def test_bad_sets_are_refused_with_what_to_do(tmp_path, items, message):
    path = tmp_path / "bad.json"
    path.write_text(items if isinstance(items, str) else json.dumps(items))
    with pytest.raises(PromptSetError) as refused:
        load_prompts(path, name="upload.json")
    assert message in str(refused.value)
    assert str(refused.value).startswith(
        "Cannot read prompt set upload.json" if items == "{" else "upload.json"
    )


def test_hosted_caps_count_prompts_and_answers():
    caps = inputs.PROMPT_SET_CAPS
    many = [CRCPrompt(f"Pick {k}.", ("A", "B")) for k in range(caps["prompts"] + 1)]
    assert check_size(many, hosted=False) is many  # no caps locally
    with pytest.raises(
        PromptSetError, match=f"{caps['prompts'] + 1} prompts \\(at most {caps['prompts']}\\)"
    ):
        check_size(many, hosted=True)
    wide = [CRCPrompt("Pick one.", tuple(str(n) for n in range(caps["answers_per_prompt"] + 1)))]
    with pytest.raises(PromptSetError, match="answers for one prompt"):
        check_size(wide, hosted=True)
    count = caps["answers"] // caps["answers_per_prompt"] + 1
    total = [
        CRCPrompt(f"Pick {k}.", tuple(str(n) for n in range(caps["answers_per_prompt"])))
        for k in range(count)
    ]
    with pytest.raises(PromptSetError, match="answers in all"):
        check_size(total, hosted=True)
    long = [CRCPrompt("Name one.", ("x" * (caps["answer_chars"] + 1),))]
    with pytest.raises(PromptSetError, match="an answer of .* characters.*run SLR Explorer locally"):
        check_size(long, hosted=True)
    wordy = [CRCPrompt("x" * (caps["instruction_chars"] + 1), ("A",))]
    with pytest.raises(PromptSetError, match="an instruction of"):
        check_size(wordy, hosted=True)
    just = [CRCPrompt(f"Pick {k}.", ("A",)) for k in range(caps["prompts"])]
    assert check_size(just, hosted=True) is just
    assert check_size(default_prompts(), hosted=True)


def test_parse_takes_decoded_json():
    assert parse_prompt_set([{"instruction": "Pick.", "valid": ["Yes", "No"]}]) == [
        CRCPrompt("Pick.", ("Yes", "No"))
    ]
