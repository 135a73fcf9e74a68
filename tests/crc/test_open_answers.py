"""The shipped "open answers" set: every answer list complete, and the set disjoint from the QA evaluation
and the demo tuning data (in the two senses crc/open_answers.py states)."""

from __future__ import annotations

import calendar
import json
import re
from pathlib import Path

import pycountry
import pytest

from slr_core.crc import open_answers
from slr_core.crc.prompt_sets import check_size, open_prompts
from slr_core.downstream import qa_data
from slr_core.models import demo_data, demo_preferences

ASSETS = Path(__file__).resolve().parents[2] / "assets"
QA = {q.id: q for q in qa_data.QUESTIONS}
SOVEREIGN_NAMES = {open_answers.country_name(code): code for code in qa_data.SOVEREIGN}
US_STATES = tuple(QA["us_states"].answers)  # the QA set's own list of the 50, an independent source
PLANETS = tuple(QA["planets"].answers)
NOBLE = set(QA["noble_gases"].answers)


def _numbers(values) -> set[str]:
    return {str(n) for n in values}


# Each prompt's complete answer set, found a second way: from pycountry, the calendar, the QA set's
# own lists, or arithmetic. Where a set is a fixed list, its stated size is checked instead (STATED).
EXPECTED = {
    "stan": {name for name in SOVEREIGN_NAMES if name.endswith("stan")},
    "letter_p": {name for name in SOVEREIGN_NAMES if name.startswith("P")},
    "dinar": {
        open_answers.country_name(c.alpha_3[:2])
        for c in pycountry.currencies
        if "Dinar" in c.name and not c.alpha_3.startswith("X")
    },
    "g7_currencies": {
        c.alpha_3
        for c in pycountry.currencies
        if c.name in ("Canadian Dollar", "Euro", "Yen", "Pound Sterling", "US Dollar")
    },
    "months_31": {calendar.month_name[m] for m in range(1, 13) if calendar.monthrange(2024, m)[1] == 31},
    "months_30": {"April", "June", "September", "November"},  # "thirty days hath September ..."
    "months_j": {m for m in QA["months"].answers if m.startswith("J")},
    "first_quarter": set(list(QA["months"].answers)[:3]),
    "working_days": set(QA["weekdays"].answers) - {"Saturday", "Sunday"},
    "weekend": {"Saturday", "Sunday"},
    "days_t": {d for d in QA["weekdays"].answers if d.startswith("T")},
    "states_m": {s for s in US_STATES if s.startswith("M")},
    "states_new": {s for s in US_STATES if s.split()[0] == "New"},
    "states_a": {s for s in US_STATES if s.startswith("A")},
    "states_i": {s for s in US_STATES if s.startswith("I")},
    "teens": _numbers(range(10, 21)),
    "clock": _numbers(range(1, 13)),
    "nineties": _numbers(range(90, 101)),
    "even": _numbers(n for n in range(1, 41) if n % 2 == 0),
    "fives": _numbers(n for n in range(1, 101) if n % 5 == 0),
    "primes": _numbers(n for n in range(50, 101) if all(n % k for k in range(2, n))),
    "squares": _numbers(n for n in range(1, 101) if round(n**0.5) ** 2 == n),
    "outer_planets": set(PLANETS[PLANETS.index("Earth") + 1 :]),
    "inner_planets": set(PLANETS[: PLANETS.index("Earth")]),
    "c_major": set("CDEFGAB"),
}
# Fixed lists: their known sizes, and that every name is a country where they name countries.
STATED = {
    "oceania": 14,  # the UN geoscheme's sovereign states of Oceania
    "caribbean": 13,  # the sovereign island states of the Caribbean
    "china_borders": 14,  # China's land neighbours
    "p5": 5,
    "benelux": 3,
    "scandinavia": 3,
    "horn": 4,
    "olympic": 5,
    "cmyk": 4,
    "rgb": 3,
    "first_ten": 10,
    "symbols": 20,
    "alkali": 6,  # group 1 less hydrogen
    "vowels": 5,
    "roman": 7,
    "face_cards": 3,
    "blood": 4,
    "coin": 2,
    "cardinal": 4,
}
COUNTRY_LISTS = (
    "stan",
    "oceania",
    "caribbean",
    "china_borders",
    "p5",
    "benelux",
    "scandinavia",
    "horn",
    "letter_p",
    "dinar",
)


def test_every_prompt_has_a_completeness_check():
    assert set(EXPECTED) | set(STATED) == set(open_answers.IDS)
    assert not set(EXPECTED) & set(STATED)
    assert 30 <= len(open_answers.IDS) <= 50


@pytest.mark.parametrize("qid", sorted(EXPECTED))
def test_answer_list_is_complete(qid):
    answers = open_answers.TABLE[qid][1]
    assert len(set(answers)) == len(answers)
    assert set(answers) == EXPECTED[qid]


@pytest.mark.parametrize("qid", sorted(STATED))
def test_fixed_list_has_its_stated_size(qid):
    answers = open_answers.TABLE[qid][1]
    assert len(set(answers)) == len(answers) == STATED[qid]
    if qid in COUNTRY_LISTS:
        assert set(answers) <= set(SOVEREIGN_NAMES)


def test_element_lists_follow_the_periodic_table():
    names = [name for _, name in open_answers.ELEMENTS]
    # The noble gases among the first 20 sit at Z = 2, 10, 18 and the alkali metals at Z = 3, 11, 19.
    assert [names[z - 1] for z in (2, 10, 18)] == [n for n in ("Helium", "Neon", "Argon") if n in NOBLE]
    alkali = open_answers.TABLE["alkali"][1]
    assert [names[z - 1] for z in (3, 11, 19)] == list(alkali[:3])
    assert all(symbol[0].isupper() and len(symbol) <= 2 for symbol, _ in open_answers.ELEMENTS)


def test_country_names_read_as_people_write_them():
    for qid in COUNTRY_LISTS:
        for name in open_answers.TABLE[qid][1]:
            assert "," not in name and "(" not in name, name


def test_the_set_loads_and_fits_the_hosted_caps():
    prompts = open_prompts()
    assert len(prompts) == len(open_answers.IDS)
    assert all(p.instruction.endswith(open_answers.SUFFIX) for p in prompts)
    assert max(len(p.valid) for p in prompts) <= 20  # the sweep lays out every answer's tokenisations
    assert check_size(prompts, hosted=True) is prompts


# ---------------------------------------------------------------- disjointness


def normalised(text: str) -> str:
    """Case, punctuation and spacing folded away."""
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def sentences(text: str) -> set[str]:
    return {normalised(s) for s in re.split(r"(?<=[.?!])\s+", text) if normalised(s)}


def _demo_prompts() -> list[str]:
    sft = json.loads((ASSETS / "demo_adapter" / "training_meta.json").read_text())
    dpo = json.loads((ASSETS / "demo_dpo_adapter" / "training_meta.json").read_text())
    examples = demo_data.build_examples(sft["seed"], sft["data"]["examples"])
    assert demo_data.examples_sha256(examples) == sft["data"]["sha256"]  # exactly what was trained on
    pairs = demo_preferences.build_pairs(dpo["seed"], dpo["data"]["pairs"])
    held_out = demo_preferences.build_pairs(dpo["held_out"]["seed"], dpo["held_out"]["pairs"])
    assert demo_preferences.pairs_sha256(pairs) == dpo["data"]["sha256"]
    return [e["instruction"] for e in examples] + [p["prompt"] for p in pairs + held_out]


def test_no_sentence_is_shared_with_the_qa_questions_or_the_demo_tuning_data():
    ours = {s for p in open_prompts() for s in sentences(p.instruction)}
    qa = {s for q in qa_data.QUESTIONS for s in sentences(q.text)}
    demo = {s for text in _demo_prompts() for s in sentences(text)}
    assert ours and qa and len(demo) > 100
    assert not ours & qa, ours & qa
    assert not ours & demo, ours & demo
    # The check can fail: the QA questions' own sentences, and a demo prompt's, are caught.
    assert sentences(qa_data.QUESTIONS[0].text) <= qa
    assert sentences(_demo_prompts()[0]) <= demo


def test_no_answer_list_is_a_qa_questions_list():
    qa_lists = {frozenset(a.casefold() for a in q.answers) for q in qa_data.QUESTIONS}
    for qid, (_, answers) in open_answers.TABLE.items():
        assert frozenset(a.casefold() for a in answers) not in qa_lists, qid
    # ... which would catch the QA set's own months, were they asked here.
    assert frozenset(m.casefold() for m in calendar.month_name[1:]) in qa_lists


@pytest.mark.real
def test_the_open_set_fits_the_demo_tokenizer(monkeypatch):
    # Every answer is sayable by Gemma's tokenizer, and the tries fit the caps (crc/trie.py).
    from conftest import USER_CACHE

    from slr_core.cache import CACHE_ENV
    from slr_core.crc.prompts import encode_prompts
    from slr_core.crc.trie import MAX_TOTAL_TRIE_NODES, MAX_TRIE_NODES
    from slr_core.models.loading import load_tokenizer

    monkeypatch.setenv(CACHE_ENV, str(USER_CACHE))
    encoded = encode_prompts(load_tokenizer("demo:post"), open_prompts())
    sizes = [len(trie) for trie in encoded.tries]
    assert max(sizes) <= MAX_TRIE_NODES // 1.5  # room to spare: the layout may grow a little
    assert sum(sizes) <= MAX_TOTAL_TRIE_NODES // 3
