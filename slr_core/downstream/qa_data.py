"""Open-ended QA questions written for SLR Explorer, each with a finite set of correct answers.

Every question asks for ONE item from a closed, well-known set, so precision, entropy over the
correct answers and coverage-n are well defined (paper section 4.1). Answers are written as
"Reference|alias|alias; Reference|alias": the reference name is itself an alias. Matching (in
slr_core/downstream/qa.py) folds case, accents, punctuation and the articles a/an/the on both sides, so the
aliases here need no such variants. Country sets come from pycountry's ISO 3166 names plus the
common short names below; "a country" means the 193 UN members and the two observer states.
The first ten questions are the quick set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pycountry


@dataclass(frozen=True)
class Question:
    """One question and its reference answers, each with the aliases that count as it."""

    id: str
    text: str
    answers: dict[str, tuple[str, ...]]


# 193 UN member states plus the observers Holy See (VA) and Palestine (PS), as ISO alpha-2 codes.
SOVEREIGN = (
    "AF AL DZ AD AO AG AR AM AU AT AZ BS BH BD BB BY BE BZ BJ BT BO BA BW BR BN BG BF BI CV KH CM CA CF "
    "TD CL CN CO KM CG CD CR CI HR CU CY CZ DK DJ DM DO EC EG SV GQ ER EE SZ ET FJ FI FR GA GM GE DE GH "
    "GR GD GT GN GW GY HT HN HU IS IN ID IR IQ IE IL IT JM JP JO KZ KE KI KP KR KW KG LA LV LB LS LR LY "
    "LI LT LU MG MW MY MV ML MT MH MR MU MX FM MD MC MN ME MA MZ MM NA NR NP NL NZ NI NE NG MK NO OM PK "
    "PW PA PG PY PE PH PL PT QA RO RU RW KN LC VC WS SM ST SA SN RS SC SL SG SK SI SB SO ZA SS ES LK SD "
    "SR SE CH SY TJ TZ TH TL TG TO TT TN TR TM TV UG UA AE GB US UY UZ VU VE VN YE ZM ZW VA PS"
).split()

# Short names people use that ISO does not list; the first one is the display name if given.
COUNTRY_ALIASES = {
    "BN": ("Brunei",),
    "BA": ("Bosnia",),
    "CD": ("Democratic Republic of the Congo", "DR Congo", "DRC", "Congo-Kinshasa"),
    "CG": ("Republic of the Congo", "Congo-Brazzaville"),
    "CI": ("Ivory Coast",),
    "CV": ("Cape Verde",),
    "CZ": ("Czech Republic",),
    "FM": ("Micronesia",),
    "GB": ("United Kingdom", "UK", "Britain", "Great Britain"),
    "IE": ("Ireland", "Republic of Ireland"),
    "KN": ("Saint Kitts and Nevis", "St Kitts and Nevis", "Saint Kitts"),
    "KP": ("North Korea", "DPRK"),
    "KR": ("South Korea", "Republic of Korea"),
    "LC": ("Saint Lucia", "St Lucia"),
    "MK": ("North Macedonia", "Macedonia"),
    "MM": ("Myanmar", "Burma"),
    "NL": ("Netherlands", "Holland"),
    "PS": ("Palestine", "State of Palestine"),
    "RU": ("Russia",),
    "SZ": ("Eswatini", "Swaziland"),
    "ST": ("Sao Tome and Principe", "Sao Tome"),
    "TL": ("Timor-Leste", "East Timor"),
    "TR": ("Turkey", "Turkiye"),
    "US": ("United States", "USA", "US", "America", "United States of America"),
    "AE": ("United Arab Emirates", "UAE"),
    "VA": ("Vatican City", "Vatican", "Holy See"),
    "VC": ("Saint Vincent and the Grenadines", "St Vincent and the Grenadines", "Saint Vincent"),
    "AG": ("Antigua and Barbuda", "Antigua"),
    "TT": ("Trinidad and Tobago", "Trinidad"),
}


def _country(code: str) -> tuple[str, tuple[str, ...]]:
    entry = pycountry.countries.get(alpha_2=code)
    iso = [getattr(entry, attr, None) for attr in ("common_name", "name", "official_name")]
    # "Korea, Republic of"-style inverted names are not what anyone types; skip them.
    iso = [name for name in iso if name and "," not in name and "(" not in name]
    extra = COUNTRY_ALIASES.get(code, ())
    names = list(dict.fromkeys([*extra, *iso]))
    return names[0], tuple(names)


def countries(codes: str) -> dict[str, tuple[str, ...]]:
    """Reference answers for a space-separated list of ISO alpha-2 codes."""
    return dict(_country(code) for code in codes.split())


def _parse(spec: str) -> dict[str, tuple[str, ...]]:
    answers = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        names = tuple(name.strip() for name in item.split("|"))
        answers[names[0]] = names
    return answers


US_STATES = (
    "Alabama; Alaska; Arizona; Arkansas; California; Colorado; Connecticut; Delaware; Florida; Georgia; "
    "Hawaii; Idaho; Illinois; Indiana; Iowa; Kansas; Kentucky; Louisiana; Maine; Maryland; Massachusetts; "
    "Michigan; Minnesota; Mississippi; Missouri; Montana; Nebraska; Nevada; New Hampshire; New Jersey; "
    "New Mexico; New York; North Carolina; North Dakota; Ohio; Oklahoma; Oregon; Pennsylvania; "
    "Rhode Island; South Carolina; South Dakota; Tennessee; Texas; Utah; Vermont; Virginia; Washington; "
    "West Virginia; Wisconsin; Wyoming"
)

AFRICA = (
    "DZ AO BJ BW BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR LY MG MW ML MR "
    "MU MA MZ NA NE NG RW ST SN SC SL SO ZA SS SD TZ TG TN UG ZM ZW"
)
EU = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE"

# (id, question, answers): a spec string, or a dict already built.
_TABLE = [
    ("us_states", "Name a US state.", US_STATES),
    ("countries", "Name a country.", countries(" ".join(SOVEREIGN))),
    (
        "planets",
        "Name a planet in our solar system.",
        "Mercury; Venus; Earth; Mars; Jupiter; Saturn; Uranus; Neptune",
    ),
    ("rainbow", "Name a colour of the rainbow.", "Red; Orange; Yellow; Green; Blue; Indigo; Violet|Purple"),
    ("chess", "Name a chess piece.", "King; Queen; Rook|Castle; Bishop; Knight; Pawn"),
    (
        "continents",
        "Name a continent.",
        "Africa; Antarctica; Asia; Australia|Oceania|Australia and Oceania; Europe; North America; South America",
    ),
    (
        "months",
        "Name a month of the year.",
        "January; February; March; April; May; June; July; August; September; October; November; December",
    ),
    ("weekdays", "Name a day of the week.", "Monday; Tuesday; Wednesday; Thursday; Friday; Saturday; Sunday"),
    (
        "zodiac",
        "Name a sign of the zodiac.",
        "Aries; Taurus; Gemini; Cancer; Leo; Virgo; Libra; Scorpio|Scorpius; Sagittarius; Capricorn; "
        "Aquarius; Pisces",
    ),
    ("oceans", "Name an ocean.", "Pacific; Atlantic; Indian; Arctic; Southern|Antarctic"),
    ("primary_colours", "Name one of the three primary colours used in painting.", "Red; Yellow; Blue"),
    (
        "secondary_colours",
        "Name one of the three secondary colours used in painting.",
        "Green; Orange; Purple|Violet",
    ),
    (
        "beatles",
        "Name a member of the Beatles.",
        "John Lennon|John|Lennon; Paul McCartney|Paul|McCartney; George Harrison|George|Harrison; "
        "Ringo Starr|Ringo|Starr|Richard Starkey",
    ),
    ("noble_gases", "Name a noble gas.", "Helium; Neon; Argon; Krypton; Xenon; Radon; Oganesson"),
    (
        "nato",
        "Name a word from the NATO phonetic alphabet.",
        "Alfa|Alpha; Bravo; Charlie; Delta; Echo; Foxtrot; Golf; Hotel; India; Juliett|Juliet; Kilo; Lima; "
        "Mike; November; Oscar; Papa; Quebec; Romeo; Sierra; Tango; Uniform; Victor; Whiskey|Whisky; "
        "X-ray|Xray; Yankee; Zulu",
    ),
    (
        "greek_letters",
        "Name a letter of the Greek alphabet.",
        "Alpha; Beta; Gamma; Delta; Epsilon; Zeta; Eta; Theta; Iota; Kappa; Lambda; Mu; Nu; Xi; Omicron; Pi; "
        "Rho; Sigma; Tau; Upsilon; Phi; Chi; Psi; Omega",
    ),
    (
        "canada",
        "Name a Canadian province or territory.",
        "Ontario; Quebec; Nova Scotia; New Brunswick; Manitoba; British Columbia; Prince Edward Island|PEI; "
        "Saskatchewan; Alberta; Newfoundland and Labrador|Newfoundland|Labrador; Northwest Territories; "
        "Yukon; Nunavut",
    ),
    (
        "australia",
        "Name a state or territory of Australia.",
        "New South Wales|NSW; Victoria; Queensland; Western Australia; South Australia; Tasmania; "
        "Australian Capital Territory; Northern Territory",
    ),
    (
        "great_lakes",
        "Name one of the Great Lakes of North America.",
        "Superior|Lake Superior; Michigan|Lake Michigan; Huron|Lake Huron; Erie|Lake Erie; "
        "Ontario|Lake Ontario",
    ),
    (
        "senses",
        "Name one of the five traditional human senses.",
        "Sight|Vision|Seeing|Eyesight; Hearing; Taste|Tasting|Gustation; Smell|Smelling|Olfaction; "
        "Touch|Touching",
    ),
    (
        "suits",
        "Name a suit in a standard deck of playing cards.",
        "Hearts|Heart; Diamonds|Diamond; Clubs|Club; Spades|Spade",
    ),
    (
        "chinese_zodiac",
        "Name an animal of the Chinese zodiac.",
        "Rat; Ox; Tiger; Rabbit|Hare; Dragon; Snake; Horse; Goat|Sheep|Ram; Monkey; Rooster|Chicken; Dog; "
        "Pig|Boar",
    ),
    ("seasons", "Name a season of the year.", "Spring; Summer; Autumn|Fall; Winter"),
    (
        "wonders",
        "Name one of the Seven Wonders of the Ancient World.",
        "Great Pyramid of Giza|Great Pyramid|Pyramid of Giza|Pyramids of Giza; "
        "Hanging Gardens of Babylon|Hanging Gardens; Statue of Zeus at Olympia|Statue of Zeus; "
        "Temple of Artemis at Ephesus|Temple of Artemis; "
        "Mausoleum at Halicarnassus|Mausoleum of Halicarnassus|Mausoleum of Mausolus; "
        "Colossus of Rhodes|Colossus; Lighthouse of Alexandria|Pharos of Alexandria|Pharos",
    ),
    ("hogwarts", "Name a Hogwarts house.", "Gryffindor; Hufflepuff; Ravenclaw; Slytherin"),
    ("dwarf_planets", "Name a dwarf planet in our solar system.", "Pluto; Ceres; Eris; Haumea; Makemake"),
    (
        "deadly_sins",
        "Name one of the seven deadly sins.",
        "Pride|Vanity|Hubris; Greed|Avarice; Lust; Envy; Gluttony; Wrath|Anger; Sloth|Laziness|Acedia",
    ),
    ("g7", "Name a member country of the G7.", countries("CA FR DE IT JP GB US")),
    ("south_america", "Name a country in South America.", countries("AR BO BR CL CO EC GY PY PE SR UY VE")),
    ("eu", "Name a member state of the European Union.", countries(EU)),
    ("germany_borders", "Name a country that borders Germany.", countries("DK PL CZ AT CH FR LU BE NL")),
    ("nordic", "Name a Nordic country.", countries("DK FI IS NO SE")),
    ("mexico_border", "Name a US state that borders Mexico.", "California; Arizona; New Mexico; Texas"),
    (
        "olympians",
        "Name one of the twelve Olympian gods of Greek mythology.",
        "Zeus; Hera; Poseidon; Demeter; Athena|Athene; Apollo; Artemis; Ares; Aphrodite; "
        "Hephaestus|Hephaistos; Hermes; Dionysus|Dionysos; Hestia",
    ),
    (
        "ninja_turtles",
        "Name one of the Teenage Mutant Ninja Turtles.",
        "Leonardo|Leo; Donatello|Donnie; Michelangelo|Mikey; Raphael|Raph",
    ),
    (
        "seven_dwarfs",
        "Name one of the seven dwarfs in Disney's Snow White.",
        "Doc; Grumpy; Happy; Sleepy; Bashful; Sneezy; Dopey",
    ),
    (
        "spice_girls",
        "Name a member of the Spice Girls.",
        "Scary Spice|Scary|Mel B|Melanie Brown; Sporty Spice|Sporty|Mel C|Melanie Chisholm; "
        "Baby Spice|Baby|Emma Bunton; Ginger Spice|Ginger|Geri Halliwell|Geri Horner; "
        "Posh Spice|Posh|Victoria Beckham|Victoria Adams",
    ),
    (
        "moon_phases",
        "Name a phase of the Moon.",
        "New Moon; Waxing Crescent; First Quarter; Waxing Gibbous; Full Moon; Waning Gibbous; "
        "Last Quarter|Third Quarter; Waning Crescent",
    ),
    (
        "atmosphere",
        "Name a layer of Earth's atmosphere.",
        "Troposphere; Stratosphere; Mesosphere; Thermosphere; Exosphere",
    ),
    ("triangles", "Name a type of triangle classified by its sides.", "Equilateral; Isosceles; Scalene"),
    (
        "primes",
        "Name a prime number less than 50.",
        "2|two; 3|three; 5|five; 7|seven; 11|eleven; 13|thirteen; 17|seventeen; 19|nineteen; "
        "23|twenty-three; 29|twenty-nine; 31|thirty-one; 37|thirty-seven; 41|forty-one; 43|forty-three; "
        "47|forty-seven",
    ),
    (
        "platonic",
        "Name a Platonic solid.",
        "Tetrahedron; Cube|Hexahedron; Octahedron; Dodecahedron; Icosahedron",
    ),
    (
        "brontes",
        "Name one of the Brontë sisters.",
        "Charlotte|Charlotte Brontë; Emily|Emily Brontë; Anne|Anne Brontë",
    ),
    ("marx_brothers", "Name one of the Marx Brothers.", "Groucho; Harpo; Chico; Zeppo; Gummo"),
    (
        "abba",
        "Name a member of ABBA.",
        "Agnetha Fältskog|Agnetha|Fältskog; Björn Ulvaeus|Björn|Ulvaeus; Benny Andersson|Benny|Andersson; "
        "Anni-Frid Lyngstad|Anni-Frid|Frida|Lyngstad",
    ),
    (
        "new_england",
        "Name a New England state.",
        "Maine; New Hampshire; Vermont; Massachusetts; Rhode Island; Connecticut",
    ),
    ("nyc_boroughs", "Name a borough of New York City.", "Manhattan; Brooklyn; Queens; Bronx; Staten Island"),
    ("uk_nations", "Name a country of the United Kingdom.", "England; Scotland; Wales; Northern Ireland"),
    ("baltic", "Name a Baltic state.", countries("EE LV LT")),
    ("tastes", "Name a basic taste.", "Sweet; Sour; Salty|Salt; Bitter; Umami|Savory|Savoury"),
    (
        "clouds",
        "Name a cloud genus.",
        "Cirrus; Cirrocumulus; Cirrostratus; Altocumulus; Altostratus; Nimbostratus; Stratocumulus; "
        "Stratus; Cumulus; Cumulonimbus",
    ),
    (
        "queen_band",
        "Name a member of the band Queen.",
        "Freddie Mercury|Freddie|Mercury; Brian May|Brian; Roger Taylor|Roger|Taylor; John Deacon|John|Deacon",
    ),
    (
        "friends",
        "Name one of the six main characters of the TV show Friends.",
        "Rachel|Rachel Green; Monica|Monica Geller; Phoebe|Phoebe Buffay; Joey|Joey Tribbiani; "
        "Chandler|Chandler Bing; Ross|Ross Geller",
    ),
    ("mars_moons", "Name a moon of Mars.", "Phobos; Deimos"),
    ("galilean_moons", "Name a Galilean moon of Jupiter.", "Io; Europa; Ganymede; Callisto"),
    ("central_america", "Name a country in Central America.", countries("BZ CR SV GT HN NI PA")),
    ("africa", "Name a country in Africa.", countries(AFRICA)),
    ("japan_islands", "Name one of the four main islands of Japan.", "Honshu; Hokkaido; Kyushu; Shikoku"),
    (
        "hawaii_islands",
        "Name one of the eight main Hawaiian islands.",
        "Hawaii|Big Island|Hawaii Island; Maui; Oahu; Kauai; Molokai; Lanai; Niihau; Kahoolawe",
    ),
]

QUESTIONS: tuple[Question, ...] = tuple(
    Question(qid, text, spec if isinstance(spec, dict) else _parse(spec)) for qid, text, spec in _TABLE
)
QUICK_COUNT = 10  # the first ten questions are the quick set


def data_digest() -> str:
    """A short hash of all questions and aliases, stored with results and in cache keys."""
    payload = [[q.id, q.text, q.answers] for q in QUESTIONS]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
