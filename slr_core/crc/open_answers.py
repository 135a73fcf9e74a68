"""The "open answers" prompt set: requests whose answers are words, names and numbers of any length.

Each request asks for one item of a closed, complete list (tests/crc/test_open_answers.py checks
every list against pycountry, the calendar module or a stated count). Answers are written as a
reply would begin: capitalised names, digits for numbers. Lists stay short (at most 20 answers)
because the sweep lays out the answers' tokenisations: on Gemma's vocabulary a common capitalised
word has dozens ("Ten" as one token, "T"+"en", ...), so "one to ten as words" took 1024 trie nodes
when every spelling was laid out, and was left out. The 44 prompts here lay out 903 nodes pruned, 5,493
once widened on the demo pair (README, "Answers of several tokens").

Disjoint from the QA evaluation (downstream/qa_data.py) and the demo tuning data (models/demo_data.py,
models/demo_preferences.py), in two senses a test checks: no sentence of a request equals a sentence
of a QA question or of a demo training prompt (after folding case, punctuation and spacing), and no
request's answer list equals a QA question's answer list: each topic of the QA set that appears here
(months, weekdays, US states, planets, ...) is asked as a different subset, so the open set is never
the QA evaluation's own questions reworded.
"""

from __future__ import annotations

import calendar

import pycountry

SUFFIX = "Do not include anything else in your reply."  # as in the paper's CRC prompts
# ISO names with a comma or a long official form, written as people write them.
COUNTRY_NAMES = {"FM": "Micronesia", "RU": "Russia", "PS": "Palestine"}


def country_name(code: str) -> str:
    """The short English name of the country with ISO 3166 alpha-2 `code`."""
    entry = pycountry.countries.get(alpha_2=code)
    return COUNTRY_NAMES.get(code) or getattr(entry, "common_name", None) or entry.name


def countries(codes: str) -> tuple[str, ...]:
    """Short names of space-separated ISO alpha-2 codes, in that order."""
    return tuple(country_name(code) for code in codes.split())


def us_states(prefix: str) -> tuple[str, ...]:
    """The US states (ISO 3166-2 type State: the 50) whose name begins with `prefix`."""
    states = pycountry.subdivisions.get(country_code="US")
    return tuple(sorted(s.name for s in states if s.type == "State" and s.name.startswith(prefix)))


def months(days: int) -> tuple[str, ...]:
    """The months of exactly `days` days (in a common year)."""
    return tuple(calendar.month_name[m] for m in range(1, 13) if calendar.monthrange(2025, m)[1] == days)


def dinar_countries() -> tuple[str, ...]:
    """Countries whose currency ISO 4217 calls a dinar (the code's first two letters name the country;
    X codes are supranational units, not a country's currency)."""
    codes = [c.alpha_3 for c in pycountry.currencies if c.name.endswith(" Dinar") and c.alpha_3[0] != "X"]
    return tuple(sorted(country_name(code[:2]) for code in codes))


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % k for k in range(2, int(n**0.5) + 1))


PLANETS = ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")  # from the Sun
# The first 20 elements by atomic number: (symbol, name).
ELEMENTS = tuple(
    tuple(pair.split(":"))
    for pair in (
        "H:Hydrogen He:Helium Li:Lithium Be:Beryllium B:Boron C:Carbon N:Nitrogen O:Oxygen F:Fluorine "
        "Ne:Neon Na:Sodium Mg:Magnesium Al:Aluminium Si:Silicon P:Phosphorus S:Sulfur Cl:Chlorine "
        "Ar:Argon K:Potassium Ca:Calcium"
    ).split()
)

# (id, request, answers); the request gets SUFFIX. Grouped by where the list comes from.
_TABLE: list[tuple[str, str, tuple[str, ...]]] = [
    # countries: pycountry names; the codes are checked against stated counts and each other
    ("stan", "Name a country whose English name ends in 'stan'.", countries("AF KZ KG PK TJ TM UZ")),
    (
        "oceania",
        "Name a sovereign country in Oceania.",
        countries("AU FJ KI MH FM NR NZ PW PG WS SB TO TV VU"),
    ),
    (
        "caribbean",
        "Name a sovereign island country of the Caribbean.",
        countries("AG BS BB CU DM DO GD HT JM KN LC VC TT"),
    ),
    (
        "china_borders",
        "Name a country that shares a land border with China.",
        countries("AF BT IN KZ KP KG LA MN MM NP PK RU TJ VN"),
    ),
    ("p5", "Name a permanent member of the UN Security Council.", countries("CN FR RU GB US")),
    ("benelux", "Name a Benelux country.", countries("BE NL LU")),
    ("scandinavia", "Name a Scandinavian country.", countries("DK NO SE")),
    ("horn", "Name a country of the Horn of Africa.", countries("DJ ER ET SO")),
    (
        "letter_p",
        "Name a country whose name begins with the letter P.",
        countries("PK PW PS PA PG PY PE PH PL PT"),
    ),
    # currencies: pycountry's ISO 4217 table
    ("dinar", "Name a country whose currency is called the dinar.", dinar_countries()),
    (
        "g7_currencies",
        "Give the ISO 4217 code of the currency of a G7 country.",
        ("CAD", "EUR", "JPY", "GBP", "USD"),
    ),
    # the calendar module
    ("months_31", "Name a month that has 31 days.", months(31)),
    ("months_30", "Name a month that has exactly 30 days.", months(30)),
    (
        "months_j",
        "Name a month whose name begins with J.",
        tuple(m for m in calendar.month_name if m[:1] == "J"),
    ),
    ("first_quarter", "Name a month of the first quarter of the year.", tuple(calendar.month_name[1:4])),
    ("working_days", "Name a working day of the week, Monday to Friday.", tuple(calendar.day_name[:5])),
    ("weekend", "Name a day of the weekend.", tuple(calendar.day_name[5:])),
    (
        "days_t",
        "Name a day of the week whose name begins with T.",
        tuple(d for d in calendar.day_name if d[0] == "T"),
    ),
    # US states: pycountry's ISO 3166-2 subdivisions of type State
    ("states_m", "Name a US state whose name begins with the letter M.", us_states("M")),
    ("states_new", "Name a US state whose name begins with the word New.", us_states("New ")),
    ("states_a", "Name a US state whose name begins with the letter A.", us_states("A")),
    ("states_i", "Name a US state whose name begins with the letter I.", us_states("I")),
    # numbers, computed
    ("teens", "Give a whole number from 10 to 20.", tuple(str(n) for n in range(10, 21))),
    ("clock", "Give a whole number from 1 to 12.", tuple(str(n) for n in range(1, 13))),
    ("nineties", "Give a whole number from 90 to 100.", tuple(str(n) for n in range(90, 101))),
    ("even", "Give an even number from 2 to 40.", tuple(str(n) for n in range(2, 41, 2))),
    ("fives", "Give a multiple of 5 from 5 to 100.", tuple(str(n) for n in range(5, 101, 5))),
    (
        "primes",
        "Give a prime number between 50 and 100.",
        tuple(str(n) for n in range(50, 101) if _is_prime(n)),
    ),
    ("squares", "Give a perfect square from 1 to 100.", tuple(str(n * n) for n in range(1, 11))),
    # colours: fixed lists with stated counts
    ("olympic", "Name a colour of the Olympic rings.", ("Blue", "Yellow", "Black", "Green", "Red")),
    ("cmyk", "Name a colour of the CMYK colour model.", ("Cyan", "Magenta", "Yellow", "Black")),
    ("rgb", "Name a colour of the RGB colour model.", ("Red", "Green", "Blue")),
    # planets, in order from the Sun
    ("outer_planets", "Name a planet farther from the Sun than Earth.", PLANETS[3:]),
    ("inner_planets", "Name a planet closer to the Sun than Earth.", PLANETS[:2]),
    # chemical elements, by atomic number
    ("first_ten", "Name one of the first ten chemical elements.", tuple(name for _, name in ELEMENTS[:10])),
    (
        "symbols",
        "Give the symbol of one of the first twenty chemical elements.",
        tuple(s for s, _ in ELEMENTS),
    ),
    (
        "alkali",
        "Name an alkali metal.",
        ("Lithium", "Sodium", "Potassium", "Rubidium", "Caesium", "Francium"),
    ),
    # letters and symbols with fixed, stated sets
    ("vowels", "Name a vowel of the English alphabet.", ("A", "E", "I", "O", "U")),
    ("roman", "Give a symbol of the Roman numerals.", ("I", "V", "X", "L", "C", "D", "M")),
    ("face_cards", "Name a face card of a standard deck.", ("Jack", "Queen", "King")),
    ("c_major", "Give the letter name of a note of the C major scale.", ("C", "D", "E", "F", "G", "A", "B")),
    ("blood", "Name a blood group of the ABO system.", ("A", "B", "AB", "O")),
    ("coin", "Name a side of a coin.", ("Heads", "Tails")),
    ("cardinal", "Name one of the four cardinal directions.", ("North", "East", "South", "West")),
]

IDS: tuple[str, ...] = tuple(row[0] for row in _TABLE)
TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    qid: (f"{text} {SUFFIX}", answers) for qid, text, answers in _TABLE
}
