"""Downstream evaluation: answer matching, metrics on hand-made examples, data sanity, a tiny end-to-end run."""

from __future__ import annotations

import copy
import dataclasses
import math
import threading

import pytest
import torch

from slr_core.downstream import evaluation, likelihood, qa, writing
from slr_core.downstream.evaluation import EvalSettings, EvaluationError, run_evaluation, select_methods
from slr_core.downstream.qa import Matcher, mean_std, normalise, question_scores
from slr_core.downstream.qa_data import QUESTIONS
from slr_core.downstream.sampling import SamplingSettings, sample_replies
from slr_core.downstream.writing_data import KINDS, PROMPTS
from slr_core.errors import SLRError
from slr_core.models.chat import encode_chat, end_of_turn_ids
from slr_core.models.hosting import HostedModeError, HostedPolicy
from slr_core.slr.landscape import Landscape, Point

BY_ID = {q.id: q for q in QUESTIONS}


def match(question_id: str, answer: str) -> str | None:
    return Matcher(BY_ID[question_id]).match(answer)


def numbers(results: dict) -> dict:
    """The results without their meta: {method: {temperature: {metric: value}}}."""
    return {key: value for key, value in results.items() if key != "meta"}


# ---------------------------------------------------------------- matching


def test_us_state_example_gives_known_metrics():
    matches = [match("us_states", a) for a in ["Ohio", "ohio.", "Texas", "banana"]]
    assert matches == ["Ohio", "Ohio", "Texas", None]
    scores = question_scores(matches, len(BY_ID["us_states"].answers))
    assert scores["precision"] == pytest.approx(0.75)
    assert scores["entropy"] == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert scores["entropy"] == pytest.approx(0.636514168)
    assert scores["coverage"] == pytest.approx(2 / 50)


@pytest.mark.parametrize(
    "question_id, answer, expected",
    [
        ("us_states", "**Ohio**", "Ohio"),
        ("us_states", "Ohio.\nTexas is bigger, though.", "Ohio"),  # first line is exactly an alias
        ("us_states", "Ohio. Texas is bigger.", "Ohio"),  # first sentence is exactly an alias
        ("us_states", "Sure! Here is one: Kansas.", "Kansas"),  # one alias inside the text
        ("us_states", "West Virginia", "West Virginia"),  # longest alias wins over "Virginia"
        ("us_states", "Arkansas is nice", "Arkansas"),  # whole words: no "Kansas" inside
        ("us_states", "Ohio and Texas", None),  # two references: not one answer
        ("us_states", "Toronto", None),
        ("us_states", "I'd go with Texas.userdata\nTexas.", "Texas"),  # a run-on reply, no space after "."
        ("countries", "I'd choose Washington D.C. in the U.S.A.", "United States"),
        ("us_states", "", None),
        ("countries", "US", "United States"),  # short alias, exact
        ("countries", "Let us go to France", "France"),  # short alias "us" not searched in text
        ("countries", "Côte d'Ivoire", "Ivory Coast"),  # accents and apostrophes folded
        ("countries", "The Bahamas.", "Bahamas"),  # article dropped
        ("countries", "The Democratic Republic of the Congo (DRC)", "Democratic Republic of the Congo"),
        ("countries", "Guinea-Bissau is in West Africa.", "Guinea-Bissau"),
        ("countries", "England", None),  # not a sovereign state
        ("primes", "I pick 17, since 17 has no divisors.", "17"),  # same reference twice is still one
        ("primes", "Seventeen", "17"),
        ("nato", "X-ray", "X-ray"),
        ("nato", "xray", "X-ray"),
    ],
)
def test_matching_rule(question_id, answer, expected):
    assert match(question_id, answer) == expected


def test_normalise():
    assert normalise("  The U.S.A.! ") == "usa"
    assert normalise("São Tomé & Príncipe") == "sao tome and principe"
    assert normalise("An apple, a day") == "apple day"
    assert normalise("Switzerland.userdata St. Louis") == "switzerland userdata st louis"


# ---------------------------------------------------------------- metrics


def test_question_scores_edge_cases():
    assert question_scores([None, None], 5) == {"precision": 0.0, "entropy": 0.0, "coverage": 0.0}
    assert question_scores(["a", "a", "a"], 4) == {"precision": 1.0, "entropy": 0.0, "coverage": 0.25}
    uniform = question_scores(["a", "b", "c", "d", None, None, None, None], 8)
    assert uniform["precision"] == pytest.approx(0.5)
    assert uniform["entropy"] == pytest.approx(math.log(4))
    assert uniform["coverage"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        question_scores([], 3)


def test_mean_std_is_population_std_and_skips_nan():
    rows = [{"x": 0.0}, {"x": 1.0}, {"x": math.nan}]
    assert mean_std(rows, ("x",)) == {"x": 0.5, "x_std": 0.5}
    assert mean_std([{"x": 2.0}, {"x": 4.0}, {"x": 6.0}], ("x",))["x_std"] == pytest.approx(math.sqrt(8 / 3))


def test_is_degenerate():
    assert writing.is_degenerate("go on go on go on go on")  # distinct-2 = 2/7
    # distinct-2 = 17/23 here, but the 4-gram "w x y z" occurs three times
    looping = "w x y z a1 a2 a3 a4 a5 w x y z b1 b2 b3 b4 b5 w x y z c1 c2 c3"
    assert writing.is_degenerate(looping)
    assert not writing.is_degenerate("The cat sat on the mat and looked at the rain.")
    assert not writing.is_degenerate("")


def test_embedding_dissimilarity_is_one_minus_mean_pairwise_cosine():
    from slr_core.downstream.metrics import embed, embedding_dissimilarity

    texts = ["The sea is calm tonight.", "Quarterly tax forms are due.", "Waves roll under the moon."]
    vectors = embed(texts)  # the real all-MiniLM-L6-v2, offline
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = 1 - sum(float(vectors[a] @ vectors[b]) for a, b in pairs) / len(pairs)
    assert embedding_dissimilarity(texts) == pytest.approx(expected, abs=1e-6)
    # related sentences are closer than unrelated ones
    assert float(vectors[0] @ vectors[2]) > float(vectors[0] @ vectors[1])
    same = embedding_dissimilarity(["same text"] * 4)
    assert 0.0 <= same < 1e-5  # rounding may leave a trace, but never below zero (-0.000 in the page)
    assert math.isnan(embedding_dissimilarity(["alone"]))


def test_prompt_scores_on_known_text():
    scores = writing.prompt_scores(["a b c", "a b d"], [-1.0, math.nan], [True, False])
    assert scores["distinct_1"] == pytest.approx(4 / 6)
    assert scores["distinct_2"] == pytest.approx(3 / 4)
    assert scores["loglik"] == pytest.approx(-1.0)  # NaN (empty sample) left out
    assert scores["repetition"] == 0.0
    assert scores["words"] == 3.0
    assert scores["stopped"] == 0.5
    same = writing.prompt_scores(["same text", "same text"], [-1.0, -1.0], [True, True])
    assert same["diversity"] == pytest.approx(0, abs=1e-5)


def test_token_logliks_match_a_direct_computation(tiny_pair, monkeypatch):
    model, tokenizer = tiny_pair.post, tiny_pair.tokenizer
    instruction, samples = "Generate a random letter", ["A B C", "", "0 1 2 3 4 5"]
    batched = likelihood.token_logliks(model, tokenizer, instruction, samples)
    prompt = encode_chat(tokenizer, instruction)
    for text, value in zip(samples, batched, strict=True):
        response = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not response:
            assert math.isnan(value)
            continue
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
        logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        expected = logprobs[torch.arange(len(response)), torch.tensor(response)].mean().item()
        assert value == pytest.approx(expected, abs=1e-4)
    monkeypatch.setattr(likelihood, "LOGIT_BUDGET", 1)  # one sample per forward pass
    one_by_one = likelihood.token_logliks(model, tokenizer, instruction, samples)
    assert one_by_one == pytest.approx(batched, abs=1e-4, nan_ok=True)


def test_a_reply_ended_by_itself_exactly_when_it_emitted_an_end_of_turn_token(tiny_pair):
    model, tokenizer = copy.deepcopy(tiny_pair.post), tiny_pair.tokenizer
    end_ids = end_of_turn_ids(tokenizer)
    # Favour the end-of-turn tokens (a logit bias on this copy's head) so that, at this cap, some
    # replies end and some do not.
    head = model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight, biased.bias[:] = head.weight, 0.0
        biased.bias[end_ids] = 2.0  # 7 of the 24 replies end within 4 tokens (min-p 0.1)
    model.set_output_embeddings(biased)
    short = SamplingSettings(num_samples=24, max_new_tokens=4, seed=1)
    replies = sample_replies(model, tokenizer, "Name a colour.", short)
    assert 0 < sum(replies.ended) < len(replies.ended), replies.ended
    assert replies.stop_share == sum(replies.ended) / 24
    # A reply that ran into the cap has all 4 tokens; one that ended has fewer (its end token not counted).
    assert [n == 4 for n in replies.tokens] == [not ended for ended in replies.ended]
    assert replies.mean_tokens == sum(replies.tokens) / 24
    # The same seed with a higher cap replays the same tokens: a reply that ended stays as it was,
    # and one that ran into the cap has either gone on or ended right at the cap.
    longer = sample_replies(model, tokenizer, "Name a colour.", dataclasses.replace(short, max_new_tokens=12))
    for text, ended, text_long, ended_long in zip(replies.texts, replies.ended, longer.texts, longer.ended):
        if ended:
            assert ended_long and text_long == text
        else:
            assert text_long != text or ended_long
    for tokens, ended, tokens_long in zip(replies.tokens, replies.ended, longer.tokens):
        assert tokens_long == tokens if ended else tokens_long >= tokens


# ---------------------------------------------------------------- data


def test_question_data_is_sane():
    assert len(QUESTIONS) >= 40
    assert len(BY_ID) == len(QUESTIONS)  # unique ids
    assert len(BY_ID["us_states"].answers) == 50
    assert len(BY_ID["countries"].answers) == 195
    for question in QUESTIONS:
        assert question.text.startswith("Name ") and question.text.endswith(".")
        assert len(question.answers) >= 2, question.id
        owner = {}
        for reference, aliases in question.answers.items():
            assert aliases and reference in aliases, (question.id, reference)
            for alias in aliases:
                key = normalise(alias)
                assert key, (question.id, alias)
                assert owner.setdefault(key, reference) == reference, (question.id, alias)
                # every alias, alone or in a sentence, maps back to its own reference
                assert match(question.id, alias) == reference, (question.id, alias)
                if not (key.isalpha() and len(key) <= 2):
                    assert match(question.id, f"My answer is {alias}!") == reference, (question.id, alias)


def test_echoing_the_question_is_not_an_answer():
    # Pre-trained models often repeat the prompt; that must never count as a correct answer.
    assert [q.id for q in QUESTIONS if match(q.id, q.text) is not None] == []


def test_writing_data_is_sane():
    assert len(PROMPTS) == 30 and len({p.id for p in PROMPTS}) == 30
    quick = PROMPTS[:6]
    assert sorted(p.kind for p in quick) == sorted(KINDS * 2)
    assert all(p.text.strip() for p in PROMPTS)


# ---------------------------------------------------------------- end to end


def tiny_landscape(strict: bool = True) -> Landscape:
    """N = 4, picks that differ by rule (q_fraction 0.9).

    paper: q_min = 0.9 x Q(post) 0.8 = 0.72 -> interval [1, 2] (D 1.0), alpha 0.5;
    strict: q_min = 0.9 x strict(post) 0.72 = 0.648 -> [1, 1] (D 0.8; [1, 2] stops 10 %), alpha 0.25.
    """
    points = {
        "post": (0.8, 0.5, 0.9, 0.72),
        "pre": (0.3, 1.5, 0.2, 0.06),
        (1, 2): (0.75, 1.0, 0.1, 0.075),
        (0, 1): (0.78, 0.6, 0.95, 0.741),
        (1, 1): (0.77, 0.8, 0.9, 0.693),
        (2, 3): (0.5, 1.2, 0.5, 0.25),
        0.0: (0.8, 0.5, 0.9, 0.72),
        0.25: (0.79, 0.7, 0.85, 0.6715),
        0.5: (0.74, 0.9, 0.5, 0.37),
        1.0: (0.3, 1.5, 0.2, 0.06),
    }
    point = {key: Point(*(values if strict else values[:2])) for key, values in points.items()}
    return Landscape(
        4,
        post=point.pop("post"),
        pre=point.pop("pre"),
        intervals={key: value for key, value in point.items() if isinstance(key, tuple)},
        soup={key: value for key, value in point.items() if isinstance(key, float)},
    )


METHODS = ["post", "slr_strict", "slr_paper", "soup_strict", "soup_paper", "slr_early", "slr_late", "pre"]


def test_select_methods_follows_the_landscape_under_both_rules():
    methods, skipped = select_methods(tiny_landscape())
    assert [m.key for m in methods] == METHODS
    by_key = {m.key: m for m in methods}
    assert by_key["slr_strict"].interval == (1, 1) and by_key["slr_paper"].interval == (1, 2)
    # Controls go with the default (strict) pick: length 1.
    assert by_key["slr_early"].interval == (0, 0) and by_key["slr_late"].interval == (3, 3)
    assert by_key["soup_strict"].alpha == 0.25 and by_key["soup_paper"].alpha == 0.5
    assert skipped == {}
    no_soup = tiny_landscape()
    no_soup.soup = {}
    methods, skipped = select_methods(no_soup)
    assert not {"soup_strict", "soup_paper"} & {m.key for m in methods}
    assert {"soup_strict", "soup_paper"} <= set(skipped)


def test_select_methods_without_strict_numbers_uses_the_paper_rule_and_says_so():
    methods, skipped = select_methods(tiny_landscape(strict=False))
    assert [m.key for m in methods] == ["post", "slr_paper", "soup_paper", "slr_early", "slr_late", "pre"]
    assert {m.key: m for m in methods}["slr_early"].interval == (0, 1)
    assert "strict" in skipped["slr_strict"]


def test_select_methods_adds_the_answer_rule_where_the_landscape_has_answer_diversity():
    landscape = tiny_landscape()
    answer_diversity = {(0, 1): 0.9, (1, 1): 0.7, (1, 2): 1.1, (2, 3): 1.2}
    for key, value in answer_diversity.items():
        landscape.intervals[key] = dataclasses.replace(landscape.intervals[key], answer_diversity=value)
    for key, point in [("post", landscape.post), ("pre", landscape.pre)]:
        setattr(landscape, key, dataclasses.replace(point, answer_diversity=0.5))
    landscape.soup = {
        alpha: dataclasses.replace(p, answer_diversity=alpha) for alpha, p in landscape.soup.items()
    }
    methods, skipped = select_methods(landscape)
    by_key = {m.key: m for m in methods}
    # strict >= 0.648 leaves [0, 1] (0.741) and [1, 1] (0.693): the answer rule takes [0, 1]'s 0.9.
    assert by_key["slr_answer"].interval == (0, 1) and by_key["slr_strict"].interval == (1, 1)
    assert by_key["soup_answer"].alpha == 0.25 and skipped == {}
    assert [m.key for m in methods][:4] == ["post", "slr_strict", "slr_paper", "slr_answer"]


TINY = EvalSettings(num_items=2, num_samples=3, max_new_tokens=3)


def test_qa_end_to_end_structure_ranges_cache(tiny_pair, monkeypatch):
    results = run_evaluation(tiny_pair, tiny_landscape(), "qa", True, [1.0, 1.5], seed=3, settings=TINY)
    assert list(results) == [*METHODS, "meta"]
    for key in METHODS:
        assert list(results[key]) == ["1.0", "1.5"]
        for metrics in results[key].values():
            assert 0.0 <= metrics["precision"] <= 1.0
            assert 0.0 <= metrics["entropy"] <= math.log(TINY.num_samples) + 1e-9
            assert 0.0 <= metrics["coverage"] <= 1.0
            assert all(metrics[f"{n}_std"] >= 0 for n in ("precision", "entropy", "coverage"))
            assert 0.0 <= metrics["stopped"] <= 1.0 and metrics["words"] >= 0.0
            assert metrics["loglik"] <= 0.0 or math.isnan(metrics["loglik"])
    meta = results["meta"]
    assert (
        meta["methods"]["slr_paper"]["interval"] == [1, 2] and meta["methods"]["soup_paper"]["alpha"] == 0.5
    )
    assert meta["methods"]["slr_strict"]["interval"] == [1, 1] and meta["q_min"]["strict"] == pytest.approx(
        0.648
    )
    assert meta["seed"] == 3 and meta["settings"]["num_samples"] == 3
    assert meta["items"] == ["us_states", "countries"]
    assert meta["post_fingerprint"] == tiny_pair.post_fingerprint
    table = evaluation.format_table(results)
    assert "SLR paper [1, 2]" in table and "SLR strict [1, 1]" in table and "coverage-n" in table
    assert "stopped" in table and "LL/tok*" in table
    assert "Proxy-Soup paper alpha=0.50" in table
    assert len(evaluation.results_frame(results)) == 16
    assert len(evaluation.figure_data(results)["precision"]) == 16

    def no_sampling(*args, **kwargs):
        raise AssertionError("a repeated call must come from the cache")

    monkeypatch.setattr(qa, "sample_replies", no_sampling)
    again = run_evaluation(tiny_pair, tiny_landscape(), "qa", True, [1.0, 1.5], seed=3, settings=TINY)
    assert numbers(again) == numbers(results)


def test_runs_reproduce_without_cache(tiny_pair):
    def run():
        landscape = tiny_landscape()
        return run_evaluation(tiny_pair, landscape, "qa", True, [1.0], 5, settings=TINY, use_cache=False)

    first, second = run(), run()
    assert first["meta"]["examples"] == second["meta"]["examples"]
    assert numbers(first) == numbers(second)


def test_writing_end_to_end(tiny_pair):
    settings = EvalSettings(num_items=3, num_samples=2, max_new_tokens=6)
    results = run_evaluation(tiny_pair, tiny_landscape(), "writing", True, [1.0], 0, settings=settings)
    for key in ("post", "slr_strict", "slr_paper", "pre"):
        metrics = results[key]["1.0"]
        assert 0.0 <= metrics["diversity"] <= 2.0
        assert 0.0 <= metrics["distinct_1"] <= 1.0 and 0.0 <= metrics["distinct_2"] <= 1.0
        assert metrics["loglik"] <= 0.0 or math.isnan(metrics["loglik"])
        assert 0.0 <= metrics["repetition"] <= 1.0
        assert {"diversity_poem", "diversity_story", "diversity_joke"} <= set(metrics)
    assert "quality PROXIES" in evaluation.format_table(results)


@pytest.mark.parametrize(
    "task, temperatures, message",
    [("poetry", [1.0], "Unknown task"), ("qa", [0.0], "temperature"), ("qa", [], "at least one temperature")],
)
def test_bad_requests_raise_clear_errors(tiny_pair, task, temperatures, message):
    with pytest.raises(EvaluationError, match=message) as caught:
        run_evaluation(tiny_pair, tiny_landscape(), task, True, temperatures, settings=TINY)
    assert isinstance(caught.value, SLRError)
    with pytest.raises(EvaluationError, match="post-trained reference"):
        run_evaluation(tiny_pair, Landscape(4), "qa", True, [1.0], settings=TINY)


# ---------------------------------------------------------------- a run in steps: the device lock, leaving, hosted mode


class Turn:
    """A device lock that counts its turns, so a test can see when it is held."""

    def __init__(self) -> None:
        self.lock, self.turns = threading.Lock(), 0

    def __enter__(self) -> Turn:
        self.lock.acquire()
        self.turns += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self.lock.release()


def test_a_run_in_steps_holds_the_lock_only_while_computing_and_stops_when_closed(tiny_pair, monkeypatch):
    turn, scored, real_score = Turn(), [], evaluation._score

    def score(*args, **kwargs):
        assert turn.lock.locked()  # every sample is drawn inside a turn
        scored.append(args[-1])
        return real_score(*args, **kwargs)

    monkeypatch.setattr(evaluation, "_score", score)
    steps = evaluation.evaluation_steps(
        tiny_pair, tiny_landscape(), "qa", True, [1.0, 1.5], 1, settings=TINY, use_cache=False, turn=turn
    )
    first = next(steps)
    assert not turn.lock.locked()  # between steps a sampler can take the device
    assert numbers(first).keys() == {"post"} and list(first["post"]) == ["1.0"]
    assert first["meta"]["steps"] == {"done": 1, "total": len(METHODS) * 2}
    assert "Post-trained" in evaluation.format_table(first)  # a partial run's table draws what it has
    assert turn.lock.acquire(timeout=1)  # e.g. a sampler, while the run waits between steps
    turn.lock.release()
    next(steps)
    steps.close()  # the visitor left
    assert scored == ["post T=1.0", "post T=1.5"] and turn.turns == 2  # nothing after the close


def test_hosted_mode_runs_the_quick_evaluation_only(tiny_pair):
    hosted = HostedPolicy(hosted=True)
    full = evaluation.evaluation_steps(tiny_pair, tiny_landscape(), "qa", False, [1.0], policy=hosted)
    with pytest.raises(HostedModeError, match="Hosted mode runs the quick evaluation only"):
        next(full)
    quick = evaluation.evaluation_steps(
        tiny_pair, tiny_landscape(), "qa", True, [1.0], settings=TINY, use_cache=False, policy=hosted
    )
    assert "post" in next(quick)
    quick.close()


def test_the_cli_evaluates_without_the_soup_when_asked(tiny_paths, tmp_path, monkeypatch):
    import json

    from slr_core.cli import main

    monkeypatch.setitem(evaluation.PRESETS, ("qa", True), TINY)
    pre, post = tiny_paths("llama")
    out = tmp_path / "qa.json"
    pair = ["--pre", str(pre), "--post", str(post), "--device", "cpu", "--no-cache"]
    assert main(["evaluate", *pair, "--task", "qa", "--quick", "--no-soup", "--temperatures", "1.0",
                 "--out", str(out)]) == 0  # fmt: skip
    results = json.loads(out.read_text())
    methods = results["meta"]["methods"]
    assert "post" in methods and "pre" in methods and any(key.startswith("slr_") for key in methods)
    assert not any(key.startswith("soup_") for key in methods)
    assert results["meta"]["skipped"]["soup_paper"] == "no soup sweep"


def test_the_cli_evaluates_chosen_intervals_without_a_landscape(tiny_paths, tmp_path, monkeypatch, capsys):
    import json

    from slr_core.cli import main
    from slr_core.engine import cached_sweep

    def no_sweep(*args, **kwargs):
        raise AssertionError("evaluating chosen intervals needs no CRC sweep")

    monkeypatch.setattr(cached_sweep, "survey", no_sweep)
    monkeypatch.setitem(evaluation.PRESETS, ("qa", True), TINY)
    pre, post = tiny_paths("llama")
    out = tmp_path / "qa.json"
    pair = ["--pre", str(pre), "--post", str(post), "--device", "cpu", "--no-cache"]
    command = ["evaluate", *pair, "--task", "qa", "--quick", "--temperatures", "1.0", "--out", str(out)]
    assert main([*command, "--intervals", "2-3,1-1"]) == 0
    results = json.loads(out.read_text())
    assert list(results["meta"]["methods"]) == ["post", "slr_1_1", "slr_2_3"]
    assert results["meta"]["methods"]["slr_2_3"]["interval"] == [2, 3] and results["meta"]["q_min"] == {}
    assert "SLR [2, 3]" in capsys.readouterr().out
    assert main([*command, "--intervals", "2-9"]) == 2  # past the 4 layers: one clear line, exit 2
    assert "error:" in capsys.readouterr().err
