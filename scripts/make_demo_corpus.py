"""Generate the small synthetic demo corpus that `python train.py` trains on by default.

Every sentence is built from the hand-written templates and word lists below (nothing is copied from
a real corpus) and carries UPOS tags, PER/ORG/LOC entity spans (token offsets, end exclusive) and
exactly one category. The output is deterministic: running the script twice gives identical files.

    python scripts/make_demo_corpus.py
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

SEED = 20240611
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "polyhead" / "corpora"
SPLITS = (("train", 320), ("dev", 60), ("test", 60))
CATS = ("sports", "business", "travel", "science")
ENT_TYPES = ("PER", "ORG", "LOC")
UPOS = set("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split())
NO_SPACE_BEFORE = {",", ".", "?", "!", "'s", "%"}
NO_SPACE_AFTER = {"$"}
LONG_EVERY = 20  # one example in 20 (5%) joins 2-4 sentences of its category

# Tag of every literal template word (looked up lower-cased). Ambiguous words ("to", "that", "as",
# "after", "drop", "final") are never listed here: templates tag them inline as word/TAG.
LEXICON = {
    "DET": "a the this what",
    "PRON": "we us you your our its",
    "AUX": "will would could be is was were have has did does",
    "ADP": "in on of at for with from by about between near during below since up",
    "SCONJ": "if",
    "CCONJ": "and but",
    "PART": "'s not",
    "ADV": "never very early why how so sharply ahead",
    "ADJ": "new next last first quarterly chief worth direct old friendly free high distant ready "
    "major rough highest",
    "NUM": "million",
    "PUNCT": ". , ? !",
    "SYM": "$ %",
    "VERB": "scored signed celebrated won deserve win miss said gave broke host reported agreed buy "
    "close open plans cut named spent loved added showed book want crowded recommends took "
    "received explored discovered published recorded orbiting say launch followed suggest exists "
    "measured funded tested grew delayed store",
    "NOUN": "goals striker contract fans team cup matches knee injury coach season players games row "
    "marathon stadium match sponsor world record metres championships percent rise profit shares "
    "results executive deal bank office year investors company growth sales jobs board finance "
    "director supply inflation level airline revenue business travel startup employees days food "
    "flight hours route town visit guide beaches hotel staff train tickets tourists museums summer "
    "holidays ferry trip islands hike top passengers meals bike prices researchers species frog "
    "colleagues journal telescope planets star scientists vaccine brain memories experiment "
    "material temperatures satellite study patients years physicist prize research sensors data "
    "probe ice surface ocean temperature lab engineers robot ground weeks light",
}

# Slot fillers: name -> (default tag, entity type or None, fillers). A filler word may carry /TAG.
SLOTS = {
    "per": ("PROPN", "PER", ["Maria Lopez", "Kenji Watanabe", "Amara Okafor", "Lars Henriksen",
            "Priya Nair", "Tom Becker", "Sofia Rossi", "Daniel Kim", "Fatima Haddad", "Oliver Grant",
            "Elena Petrova", "Anna Maria Costa", "Rossi", "Okafor", "Mateo Silva", "Grace Mensah"]),
    "team": ("PROPN", "ORG", ["Riverside United", "Northgate Rovers", "Eastfield Athletic",
             "Harbor City", "Redhill Wanderers", "Lakeside Tigers", "Westbrook Falcons"]),
    "company": ("PROPN", "ORG", ["Northwind Trading Company", "Bluepeak Systems", "Solara Energy",
                "Kestrel Bank", "Greenleaf Foods", "Ironbridge Motors", "Vantia", "Cobalt Logistics"]),
    "inst": ("PROPN", "ORG", ["Halden Institute", "Marlow University", "Carver Medical Center",
             "Halden Institute of/ADP Technology", "Eastmoor Lab", "Brightwater College"]),
    "space": ("PROPN", "ORG", ["Orion Space Agency", "Polaris Aerospace", "Starline"]),
    "airline": ("PROPN", "ORG", ["Skyline Air", "Coastal Airways", "Aurora Airlines", "Jetwing"]),
    "loc": ("PROPN", "LOC", ["New York", "San Francisco", "Cape Town", "Buenos Aires", "Lake Como",
            "Lisbon", "Kyoto", "Nairobi", "Oslo", "Lima", "Reykjavik", "Vancouver", "Marrakesh",
            "Hanoi", "Melbourne", "Patagonia", "Sicily", "Hong Kong"]),
    "day": ("PROPN", None, ["Monday", "Tuesday", "Friday", "Saturday", "Sunday"]),
    "month": ("PROPN", None, ["January", "March", "May", "July", "September", "November"]),
    "year": ("NUM", None, ["2019", "2021", "2023", "2025", "2027"]),
    "num": ("NUM", None, ["2", "3", "4", "5", "7", "9", "12", "15", "18", "40", "65", "two", "three",
            "five", "ten"]),
    "pct": ("NUM", None, ["1.5", "2.4", "3", "4.8", "7", "12", "19"]),
    "dist": ("NUM", None, ["100", "200", "400", "800", "1500"]),
    "period": ("NOUN", None, ["quarter", "month", "year", "week"]),
    "beat": ("VERB", None, ["beat", "defeated", "edged", "thrashed", "surprised"]),
    "move": ("VERB", None, ["rose", "fell", "jumped", "slipped", "climbed"]),
    "discover": ("VERB", None, ["discovered", "found", "described", "identified"]),
    "adj_sport": ("ADJ", None, ["brilliant", "young", "tough", "tense", "dramatic", "long"]),
    "adj_biz": ("ADJ", None, ["weak", "strong", "nervous", "optimistic", "cautious", "disappointing"]),
    "adj_travel": ("ADJ", None, ["quiet", "beautiful", "crowded", "cheap", "lovely", "sandy", "steep"]),
    "adj_sci": ("ADJ", None, ["stable", "flexible", "transparent", "stronger", "brittle", "cheaper"]),
}  # fmt: skip

TEMPLATES = {
    "sports": [
        "{per} scored {num} goals as/SCONJ {team} {beat} {team} on {day} .",
        "The {adj_sport} striker {per} signed a new contract with {team} .",
        "Fans in {loc} celebrated after/SCONJ the team won the final/NOUN !",
        "Did {team} deserve to/PART win the cup ?",
        "{per} will miss the next {num} matches with a knee injury .",
        "The coach said that/SCONJ the season was {adj_sport} but the players never gave up .",
        "{team} have won {num} games in a row .",
        "{per} won the {loc} marathon ahead of {per} .",
        "The stadium in {loc} will host the final/NOUN in {year} .",
        "What a {adj_sport} match !",
        "{team} signed {per} from {team} for $ {num} million .",
        "The team 's new sponsor is {company} .",
        "{per} broke the world record in the {dist} metres at the championships in {loc} .",
        "{team} {beat} {team} in a {adj_sport} final/NOUN .",
    ],
    "business": [
        "{company} reported a {pct} percent rise in quarterly profit .",
        "Shares of {company} {move} {pct} % on {day} after/ADP the {adj_biz} results .",
        "{company} agreed to/PART buy {company} for $ {num} million .",
        "{per} , the chief executive of {company} , said the deal would close in {year} .",
        "The bank will open a new office in {loc} next year .",
        "Investors were {adj_biz} about the company 's growth .",
        "Why did sales drop/VERB so sharply last {period} ?",
        "{company} plans to/PART cut {num} jobs in {loc} .",
        "The board named {per} as/ADP its new finance director .",
        "{company} and {company} signed a supply contract worth $ {num} million .",
        "Inflation {move} to/ADP {pct} percent in {month} , the highest level since {year} .",
        "The airline 's revenue from business travel grew by {pct} percent .",
        "{per} launched/VERB a startup in {loc} with {num} employees .",
    ],
    "travel": [
        "We spent {num} days in {loc} and loved the food .",
        "The flight from {loc} to/ADP {loc} was delayed by {num} hours .",
        "{airline} added a direct route between {loc} and {loc} .",
        "Is/AUX the old town in {loc} worth a visit/NOUN ?",
        "Our guide , {per} , showed us the {adj_travel} beaches near {loc} .",
        "The hotel was {adj_travel} and the staff were very friendly .",
        "Book your train tickets early if you want to/PART visit/VERB {loc} in {month} .",
        "Tourists crowded the museums of {loc} during the summer holidays .",
        "{per} recommends a ferry trip from {loc} to/ADP the islands .",
        "The {adj_travel} hike to/ADP the top took us {num} hours .",
        "Passengers on the {airline} flight to/ADP {loc} received free meals .",
        "After/ADP the match , the fans explored {loc} by bike .",
        "Hotel prices in {loc} {move} {pct} percent this summer .",
    ],
    "science": [
        "Researchers at {inst} {discover} a new species of frog in {loc} .",
        "{per} and colleagues published the results in a major journal .",
        "The telescope recorded {num} new planets orbiting a distant star .",
        "Scientists at {inst} say the vaccine could be ready by {year} .",
        "How does the brain store memories ?",
        "The experiment showed that/SCONJ the new material is {adj_sci} at high temperatures .",
        "{space} will launch a satellite from {loc} in {month} .",
        "The study followed {num} patients for {num} years .",
        "{per} , a physicist at {inst} , won a major prize for research on light sensors .",
        "Data from the probe suggest that/SCONJ ice exists below the surface .",
        "The team measured a {pct} percent drop/NOUN in ocean temperature near {loc} .",
        "{company} funded a new research lab at {inst} .",
        "Engineers tested the robot on rough ground for {num} weeks .",
    ],
}

WORD_TAG = {w: tag for tag, words in LEXICON.items() for w in words.split()}
assert len(WORD_TAG) == sum(len(ws.split()) for ws in LEXICON.values()), "a word is listed twice"


def split_tag(word: str, default: str | None) -> tuple[str, str]:
    """'to/PART' -> ('to', 'PART'); a bare word gets `default` or its lexicon tag."""
    if "/" in word and word.rsplit("/", 1)[1] in UPOS:
        text, tag = word.rsplit("/", 1)
        return text, tag
    tag = default or WORD_TAG.get(word.lower())
    if tag is None:
        raise KeyError(f"no tag for template word {word!r}")
    return word, tag


def fill(template: str, rng: random.Random) -> tuple[list[str], list[str], list[list]]:
    """Expand one template into tokens, tags and entity spans; one filler is not reused in a sentence."""
    tokens, tags, ents, used = [], [], [], set()
    for piece in template.split():
        if piece.startswith("{"):
            tag, label, fillers = SLOTS[piece[1:-1]]
            filler = rng.choice([f for f in fillers if f not in used])
            used.add(filler)
            start = len(tokens)
            for word in filler.split():
                text, t = split_tag(word, tag)
                tokens.append(text)
                tags.append(t)
            if label:
                ents.append([start, len(tokens), label])
        else:
            text, t = split_tag(piece, None)
            tokens.append(text)
            tags.append(t)
    tokens[0] = tokens[0][:1].upper() + tokens[0][1:]
    return tokens, tags, ents


def recase(tokens: list[str], rng: random.Random) -> list[str]:
    """Some casing variety: a few all-caps headlines and a few all-lowercase sentences."""
    r = rng.random()
    if r < 0.04:
        return [t.upper() for t in tokens]
    if r < 0.09:
        return [t.lower() for t in tokens]
    return tokens


def sentence(cat: str, rng: random.Random) -> tuple[list[str], list[str], list[list]]:
    tokens, tags, ents = fill(rng.choice(TEMPLATES[cat]), rng)
    return recase(tokens, rng), tags, ents


def long_text(cat: str, rng: random.Random) -> tuple[list[str], list[str], list[list]]:
    """2-4 sentences of one category joined into a 40-80 token text."""
    while True:
        tokens, tags, ents = [], [], []
        for _ in range(rng.randint(2, 4)):
            t, g, e = fill(rng.choice(TEMPLATES[cat]), rng)
            ents += [[s + len(tokens), end + len(tokens), lab] for s, end, lab in e]
            tokens += t
            tags += g
        if 40 <= len(tokens) <= 80:
            return tokens, tags, ents


def spaces_for(tokens: list[str]) -> list[bool]:
    """Whitespace after each token: none before , . ? ! 's %, none after $, none at the end."""
    nxt = tokens[1:] + [None]
    return [
        n is not None and n not in NO_SPACE_BEFORE and t not in NO_SPACE_AFTER
        for t, n in zip(tokens, nxt, strict=True)
    ]


def text_of(tokens: list[str], spaces: list[bool]) -> str:
    return "".join(t + (" " if s else "") for t, s in zip(tokens, spaces, strict=True))


def generate(rng: random.Random) -> dict[str, list[dict]]:
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, n in SPLITS:
        rows = []
        for i in range(n):
            cat, is_long = CATS[i % len(CATS)], i % LONG_EVERY == LONG_EVERY - 1
            for _ in range(1000):
                tokens, tags, ents = long_text(cat, rng) if is_long else sentence(cat, rng)
                spaces = spaces_for(tokens)
                key = text_of(tokens, spaces).lower()
                if key not in seen:
                    break
            else:
                raise RuntimeError(f"could not find a new {cat} sentence")
            seen.add(key)
            rows.append({"id": f"demo-{split}-{i + 1:04d}", "tokens": tokens, "spaces": spaces,
                         "tags": tags, "ents": ents, "cats": [cat]})  # fmt: skip
        out[split] = rows
    return out


def validate(rows: list[dict]) -> None:
    for row in rows:
        rid, n, long = row["id"], len(row["tokens"]), len(row["tokens"]) > 30
        assert list(row) == ["id", "tokens", "spaces", "tags", "ents", "cats"], rid
        assert len(row["spaces"]) == n == len(row["tags"]), f"{rid}: length mismatch"
        assert (40 <= n <= 80) if long else (5 <= n <= 30), f"{rid}: {n} tokens"
        assert all(t in UPOS for t in row["tags"]), f"{rid}: unknown tag"
        assert all(tok and " " not in tok for tok in row["tokens"]), f"{rid}: bad token"
        assert row["spaces"][-1] is False, f"{rid}: trailing space"
        end = 0
        for s, e, label in sorted(row["ents"]):
            assert end <= s < e <= n and label in ENT_TYPES, f"{rid}: bad span {s, e, label}"
            end = e
        assert len(row["cats"]) == 1 and row["cats"][0] in CATS, f"{rid}: bad cats"


def main() -> None:
    data = generate(random.Random(SEED))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    all_texts = [text_of(r["tokens"], r["spaces"]).lower() for rows in data.values() for r in rows]
    assert len(all_texts) == len(set(all_texts)), "duplicate sentence"
    for split, rows in data.items():
        validate(rows)
        path = OUT_DIR / f"demo_{split}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        cats = Counter(r["cats"][0] for r in rows)
        ents = Counter(e[2] for r in rows for e in r["ents"])
        n_long = sum(len(r["tokens"]) > 30 for r in rows)
        n_tokens = sum(len(r["tokens"]) for r in rows)
        print(f"{path.name}: {len(rows)} examples, {n_tokens} tokens, {n_long} long")
        print("  cats: " + ", ".join(f"{c}={cats[c]}" for c in CATS))
        print("  ents: " + ", ".join(f"{t}={ents[t]}" for t in ENT_TYPES))
        print(f"  no entity: {sum(not r['ents'] for r in rows)}")


if __name__ == "__main__":
    main()
