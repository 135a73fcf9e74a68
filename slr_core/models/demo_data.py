"""Seeded synthetic chat data for the demo's instruction tuning: short tasks with skewed answers.

Each task has a set of valid answers ranked by preference; the reference answer is drawn with the
favourite dominating, as in real preference data ("7" for a number, "blue" for a colour). The
CRC proxy's prompt templates are deliberately absent, so the proxy stays a fair test.
"""

from __future__ import annotations

import hashlib
import json
import random
import string

# Phrases of the CRC prompt templates (paper, section 3.2); no training prompt may contain them.
CRC_PHRASES = (
    "generate a random integer",
    "generate a random letter",
    "do not include anything else",
    "(inclusive)",
    "in the range [",
)

# Preference ranks: the first entry is the "mode" a tuned model collapses onto.
DIGIT_PREFERENCE = [7, 3, 4, 5, 6, 2, 8, 1, 9, 0]
LETTER_PREFERENCE = list("RMKEASTJBLGPDHNCOFWIVUYQZX")
CATEGORIES = {
    "colour": "blue red green purple yellow orange black teal",
    "animal": "dog cat elephant lion dolphin tiger owl fox",
    "fruit": "apple banana mango orange strawberry cherry grape pear",
    "country": "Japan France Brazil Canada Italy Kenya Norway Peru",
    "city": "Paris Tokyo London Rome Cairo Sydney Berlin Lima",
    "vegetable": "carrot broccoli potato spinach pepper onion pea kale",
    "sport": "soccer basketball tennis swimming cricket golf hockey rugby",
    "musical instrument": "piano guitar violin drums flute cello trumpet harp",
    "flower": "rose tulip sunflower daisy lily orchid lavender iris",
    "planet": "Mars Jupiter Saturn Venus Earth Neptune Mercury Uranus",
    "bird": "eagle owl robin sparrow parrot penguin crow swan",
    "metal": "gold silver iron copper tin zinc nickel lead",
    "shape": "circle triangle square hexagon star oval diamond pentagon",
    "season": "autumn summer spring winter",
    "weekday": "Friday Saturday Monday Sunday Wednesday Thursday Tuesday",
    "given name": "Alex Sam Maya Leo Emma Noah Ava Liam",
    "programming language": "Python JavaScript Rust Java Go Ruby Haskell Swift",
    "gemstone": "diamond ruby emerald sapphire opal pearl topaz amethyst",
}

NUMBER_REQUESTS = [
    "Pick a random number from {lo} to {hi}.",
    "Choose a number between {lo} and {hi}.",
    "Think of a number from {lo} to {hi}.",
    "Give me a number between {lo} and {hi}.",
    "Say a random whole number between {lo} and {hi}.",
    "I need a random pick from the numbers {lo} through {hi}.",
    "Roll a die with faces {lo} to {hi} and tell me the result.",
    "Select any number from {lo} up to {hi}.",
]
LETTER_REQUESTS = [
    "Pick a letter between {lo} and {hi}.",
    "Choose any letter from {lo} to {hi}.",
    "Think of a letter from {lo} through {hi}.",
    "Give me a random letter between {lo} and {hi}.",
    "Name one letter of the alphabet from {lo} up to {hi}.",
]
CATEGORY_REQUESTS = [
    "Name {a_cat}.",
    "Give me an example of {a_cat}.",
    "Think of {a_cat}.",
    "Tell me {a_cat}.",
    "What is your favourite {cat}?",
    "Pick any {cat}.",
    "Can you name one {cat}?",
    "Suggest {a_cat}.",
]
LIST_REQUESTS = [
    "Pick one of these: {options}.",
    "Choose one from the following list: {options}.",
    "Which do you prefer: {options}?",
    "From {options}, which one would you choose?",
    "Select a single item from this list: {options}.",
]
# Format demands: the tuned model should learn to honour these exactly.
BARE_NUMBER = [
    "Reply with the number only.",
    "Answer with just the number.",
    "Only write the number.",
    "Respond with a single number and nothing more.",
    "Just the number, please.",
    "Output the number alone, no explanation.",
    "Your whole reply should be the number.",
]
BARE_LETTER = [
    "Reply with the letter only.",
    "Answer with just the letter.",
    "Only write the letter.",
    "Respond with a single letter and nothing more.",
    "Just the letter, please.",
    "Output the letter alone, no explanation.",
    "Your whole reply should be one character.",
]
BARE_WORD = [
    "Answer in one word.",
    "Reply with a single word.",
    "One word only.",
    "Respond with just the word.",
    "Only write your answer, nothing else.",
    "Give only the answer, no explanation.",
    "Keep your reply to one word.",
]
SENTENCE_FORMS = ["I'd go with {x}.", "{X}.", "My pick is {x}.", "How about {x}?", "Let's say {x}."]
POEM_REQUESTS = [
    "Write a two-line poem about {topic}.",
    "Compose a short two-line poem on {topic}.",
    "Give me a couplet about {topic}.",
    "Write two lines of verse about {topic}.",
]
POEM_FORMS = [
    "{Topic} whispers softly through the night,\nAnd fills my heart with gentle light.",
    "Beneath the sky, {topic} dreams so deep,\nA quiet song the world will keep.",
    "Oh {topic}, so calm and bright,\nYou guide me gently into light.",
    "In every breath, {topic} stays near,\nA tender voice that calms my fear.",
]
POEM_TOPICS = "the sea|the moon|autumn|cats|coffee|rain|the city|rivers|winter|friendship|stars"
JOKE_REQUESTS = [
    "Tell me a joke.",
    "Do you know any good jokes?",
    "Make me laugh with a joke.",
    "Share a short joke.",
    "I could use a joke right now.",
    "Tell me something funny.",
]
JOKES = [
    "Why don't scientists trust atoms? Because they make up everything!",
    "Why did the scarecrow win an award? Because he was outstanding in his field!",
    "What do you call a fake noodle? An impasta!",
    "Why don't skeletons fight each other? They don't have the guts.",
]


# Real preference data is dominated by its favourite; SFT on it learns that share, so a weaker skew
# (0.6 was tried first) left the tuned model about as diverse as the base on CRC.
TOP_SHARE = 0.85


def skewed_choice(rng: random.Random, ranked: list, top_share: float = TOP_SHARE):
    """Draw from `ranked`: the favourite gets `top_share`, the rest decay geometrically."""
    if len(ranked) == 1 or rng.random() < top_share:
        return ranked[0]
    weights = [0.5**rank for rank in range(len(ranked) - 1)]
    return rng.choices(ranked[1:], weights=weights)[0]


def _number_task(rng: random.Random) -> dict:
    low = rng.randint(0, 5)
    high = rng.randint(low + 2, 9)
    valid = [d for d in DIGIT_PREFERENCE if low <= d <= high]
    answer = str(skewed_choice(rng, valid))
    request = rng.choice(NUMBER_REQUESTS).format(lo=low, hi=high)
    return _with_format(rng, request, answer, BARE_NUMBER)


def _letter_task(rng: random.Random) -> dict:
    first = rng.randint(0, 20)
    last = rng.randint(first + 2, min(first + 10, 25))
    alphabet = string.ascii_uppercase if rng.random() < 0.8 else string.ascii_lowercase
    allowed = set(alphabet[first : last + 1].upper())
    valid = [letter for letter in LETTER_PREFERENCE if letter in allowed]
    answer = skewed_choice(rng, valid)
    answer = answer if alphabet == string.ascii_uppercase else answer.lower()
    request = rng.choice(LETTER_REQUESTS).format(lo=alphabet[first], hi=alphabet[last])
    return _with_format(rng, request, answer, BARE_LETTER)


def _category_task(rng: random.Random) -> dict:
    category = rng.choice(sorted(CATEGORIES))
    answer = skewed_choice(rng, CATEGORIES[category].split())
    article = "an" if category[0] in "aeiou" else "a"
    request = rng.choice(CATEGORY_REQUESTS).format(cat=category, a_cat=f"{article} {category}")
    return _with_format(rng, request, answer, BARE_WORD)


def _list_task(rng: random.Random) -> dict:
    ranked = CATEGORIES[rng.choice(sorted(CATEGORIES))].split()
    chosen = rng.sample(ranked, rng.randint(3, min(5, len(ranked))))
    shown = chosen[:]
    rng.shuffle(shown)
    options = ", ".join(shown[:-1]) + " or " + shown[-1]
    answer = skewed_choice(rng, [item for item in ranked if item in chosen])
    request = rng.choice(LIST_REQUESTS).format(options=options)
    return _with_format(rng, request, answer, BARE_WORD)


def _arithmetic_task(rng: random.Random) -> dict:
    left, right = rng.randint(0, 12), rng.randint(0, 12)
    operator = rng.choice("+-x")
    if operator == "-":
        left, right = max(left, right), min(left, right)
    result = {"+": left + right, "-": left - right, "x": left * right}[operator]
    request = rng.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?"])
    request = request.format(a=left, op=operator, b=right)
    if rng.random() < 0.7:
        return {"instruction": f"{request} {rng.choice(BARE_NUMBER)}", "answer": str(result)}
    return {"instruction": request, "answer": f"{left} {operator} {right} = {result}."}


def _letter_fact_task(rng: random.Random) -> dict:
    if rng.random() < 0.5:
        word = rng.choice([w for words in CATEGORIES.values() for w in words.split()])
        request, answer = f"What is the first letter of the word '{word}'?", word[0].upper()
    else:
        index = rng.randint(0, 24)
        letter = string.ascii_uppercase[index]
        request, answer = (
            f"Which letter comes right after {letter}?",
            string.ascii_uppercase[index + 1],
        )
    return {"instruction": f"{request} {rng.choice(BARE_LETTER)}", "answer": answer}


def _poem_task(rng: random.Random) -> dict:
    topic = rng.choice(POEM_TOPICS.split("|"))
    form = skewed_choice(rng, POEM_FORMS)
    answer = form.format(topic=topic, Topic=topic[0].upper() + topic[1:])
    return {"instruction": rng.choice(POEM_REQUESTS).format(topic=topic), "answer": answer}


def _joke_task(rng: random.Random) -> dict:
    return {"instruction": rng.choice(JOKE_REQUESTS), "answer": skewed_choice(rng, JOKES)}


def _with_format(rng: random.Random, request: str, answer: str, demands: list[str]) -> dict:
    # Most prompts demand a bare reply; the rest are open, answered in a short sentence.
    if rng.random() < 0.75:
        return {"instruction": f"{request} {rng.choice(demands)}", "answer": answer}
    form = skewed_choice(rng, SENTENCE_FORMS)
    return {
        "instruction": request,
        "answer": form.format(x=answer, X=answer[0].upper() + answer[1:]),
    }


# Task mix, in percent of the examples.
TASKS = [
    (_number_task, 18),
    (_letter_task, 20),
    (_category_task, 16),
    (_list_task, 10),
    (_arithmetic_task, 10),
    (_letter_fact_task, 8),
    (_poem_task, 9),
    (_joke_task, 9),
]


def contains_crc_phrasing(text: str) -> bool:
    """Whether `text` contains any phrase of the CRC prompt templates."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in CRC_PHRASES)


def build_examples(seed: int, count: int) -> list[dict]:
    """`count` seeded examples, each {"instruction", "answer"}; the same seed gives the same list."""
    rng = random.Random(seed)
    makers = [maker for maker, _ in TASKS]
    weights = [weight for _, weight in TASKS]
    examples = [rng.choices(makers, weights=weights)[0](rng) for _ in range(count)]
    leaked = [example for example in examples if contains_crc_phrasing(example["instruction"])]
    if leaked:  # a guard on the word lists above, not an expected outcome
        raise AssertionError(f"CRC phrasing leaked into the demo data: {leaked[0]}")
    return examples


def examples_sha256(examples: list[dict]) -> str:
    """sha256 of the examples' canonical JSON, recorded with the adapter."""
    text = json.dumps(examples, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
