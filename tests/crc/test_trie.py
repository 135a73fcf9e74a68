"""Answer tries: every token sequence that says an answer, against whole-sequence decoding."""

import pytest

from slr_core.crc import trie as trie_module
from slr_core.crc.prompts import CRCPrompt, default_prompts, encode_prompts, single_character_tokens
from slr_core.crc.trie import answer_tries, build_trie, layout_trie, pruned_trie, trie_sizes
from slr_core.engine.naive import answer_sequences
from slr_core.errors import PromptSetError

# Multi-token answers the tiny tokenizer (tests/tiny_pairs.py) can say: prefix pairs ("1" / "10",
# "Ran" / "Random"), interior whitespace ("CD E"), digits and capitals.
NUMBERS = tuple(str(n) for n in range(1, 13))
WORDS = ("Ran", "Random", "AB", "CD E")


def _complete_paths(trie) -> set[tuple[tuple[int, ...], int]]:
    return {(tuple(trie.path(n)), trie.answer[n]) for n in range(len(trie)) if trie.answer[n] >= 0}


@pytest.mark.parametrize("answers", [NUMBERS, WORDS, tuple("0123456789"), tuple("ABCDEFG")])
def test_trie_paths_are_exactly_the_sequences_that_say_an_answer(tiny_pair, answers):
    tokenizer = tiny_pair.tokenizer
    trie = build_trie(tokenizer, answers)
    expected = {(tuple(sequence), slot) for sequence, slot in answer_sequences(tokenizer, answers)}
    assert _complete_paths(trie) == expected
    # Parents come first, and every node lies on the way to an answer (no dead ends).
    assert all(parent < node for node, parent in enumerate(trie.parent))
    on_a_path = {tuple(path[:k]) for path, _ in expected for k in range(1, len(path) + 1)}
    assert {tuple(trie.path(n)) for n in range(len(trie))} == on_a_path


def test_single_character_answers_are_the_valid_first_tokens_in_their_old_order(tiny_pair):
    tokenizer = tiny_pair.tokenizer
    index = single_character_tokens(tokenizer)
    encoded = encode_prompts(tokenizer, default_prompts())
    for prompt, trie, tokens, slots in zip(
        encoded.prompts, encoded.tries, encoded.token_ids, encoded.char_index
    ):
        assert trie.is_flat and all(trie.minimal)
        expected = [(token, slot) for slot, c in enumerate(prompt.valid) for token in index[c]]
        assert list(zip(tokens.tolist(), slots.tolist())) == expected


def test_prefix_pairs_count_the_shorter_answer_first(tiny_pair):
    tokenizer = tiny_pair.tokenizer
    trie = build_trie(tokenizer, NUMBERS)
    one = NUMBERS.index("1")
    for node in range(len(trie)):
        path = trie.path(node)
        said = tokenizer.decode(path).strip()
        if trie.answer[node] >= 0:
            assert NUMBERS[trie.answer[node]] == said
        # "1" then "0" says "10" but a reply that begins "1" has already begun with an answer.
        starts_with_one = any(tokenizer.decode(path[:k]).strip() == "1" for k in range(1, len(path)))
        assert trie.minimal[node] == (trie.answer[node] >= 0 and not starts_with_one)
    assert any(trie.answer[n] == NUMBERS.index("10") and not trie.minimal[n] for n in range(len(trie)))
    assert all(trie.minimal[n] for n in range(len(trie)) if trie.answer[n] == one)


def test_an_answer_no_sequence_says_is_a_clear_error(tiny_pair):
    prompt = CRCPrompt("Name a Greek letter.", ("A", "λx"))
    with pytest.raises(PromptSetError, match=r"says the answer\(s\) \['λx'\].*Greek"):
        encode_prompts(tiny_pair.tokenizer, [prompt])


def test_tries_over_the_caps_are_refused_with_the_numbers(tiny_pair, monkeypatch):
    tokenizer = tiny_pair.tokenizer
    sizes = trie_sizes(tokenizer, [NUMBERS, WORDS])
    assert sizes == [len(build_trie(tokenizer, NUMBERS)), len(build_trie(tokenizer, WORDS))]
    monkeypatch.setattr(trie_module, "MAX_TRIE_NODES", 5)
    with pytest.raises(PromptSetError, match=r"need \d+ trie nodes .* the cap is 5 per prompt"):
        answer_tries(tokenizer, ["Pick a number."], [NUMBERS])
    monkeypatch.setattr(trie_module, "MAX_TRIE_NODES", 1024)
    monkeypatch.setattr(trie_module, "MAX_TOTAL_TRIE_NODES", sum(sizes) - 1)
    with pytest.raises(
        PromptSetError, match=rf"need {sum(sizes)} trie nodes in all.*cap is {sum(sizes) - 1}"
    ):
        answer_tries(tokenizer, ["Pick a number.", "Pick a word."], [NUMBERS, WORDS])


def test_a_pruned_trie_names_every_continuation_it_leaves_out(tiny_pair, monkeypatch):
    # Every sequence that says an answer is either laid out whole or passes a left-out token.
    tokenizer = tiny_pair.tokenizer
    answers = ("Random", "CD E", "12")
    monkeypatch.setattr(trie_module, "SHORT_SEQUENCES", 1)
    trie = pruned_trie(tokenizer, answers)
    full = build_trie(tokenizer, answers)
    assert len(trie) < len(full)
    laid_out = {tuple(trie.path(n)): n for n in range(len(trie))}
    for sequence, slot in answer_sequences(tokenizer, answers):
        node = laid_out.get(tuple(sequence))
        if node is not None:
            assert trie.answer[node] == slot
            continue
        depth = max(k for k in range(len(sequence)) if k == 0 or tuple(sequence[:k]) in laid_out)
        left_out = trie.root_omitted if depth == 0 else trie.omitted[laid_out[tuple(sequence[:depth])]]
        assert sequence[depth] in left_out, sequence
    # The cap decides: under it the whole trie is laid out, over it the pruned one.
    assert len(layout_trie(tokenizer, answers)) == len(full)
    monkeypatch.setattr(trie_module, "MAX_TRIE_NODES", len(full) - 1)
    assert len(layout_trie(tokenizer, answers)) == len(trie)
