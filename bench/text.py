"""Sentence-like memory texts and search queries, generated from templates and word lists.

The memories read like what an assistant stores about a person: personal facts, preferences,
work notes, health, travel, plans. Queries are phrased the way people ask for such things, over
the same vocabulary, so a query has real neighbours among the memories without copying one.
"""

from __future__ import annotations

import random
import re

WORDS: dict[str, list[str]] = {
    key: value.split("|")
    for key, value in {
        "name": "Alice|Bruno|Chiara|Dmitri|Elena|Farid|Grace|Hiro|Ines|Jonas|Keiko|Lars|Maya|Nadia|Omar|Priya|"
        "Quentin|Rosa|Sven|Tariq|Uma|Viktor|Wen|Ximena|Yusuf|Zofia|Ana|Ben|Carla|Diego",
        "relative": "sister|brother|mother|father|daughter|son|cousin|aunt|uncle|grandmother|partner|"
        "best friend|neighbour|flatmate",
        "city": "Lisbon|Berlin|Kyoto|Toronto|Nairobi|Oslo|Lyon|Porto|Seattle|Melbourne|Vienna|Bogotá|Krakow|"
        "Edinburgh|Montreal|Seville|Utrecht|Valparaíso|Tallinn|Hanoi|Bristol|Ghent|Trieste|Busan",
        "job": "nurse|architect|data engineer|teacher|pilot|pharmacist|carpenter|lawyer|chef|radiologist|"
        "product manager|translator|firefighter|physiotherapist|accountant|journalist",
        "drink": "green tea|black coffee|oat flat white|espresso|rooibos|sparkling water|matcha|chai latte|"
        "decaf americano|hot chocolate|kombucha",
        "food": "ramen|sourdough pizza|vegetable curry|sushi|falafel|tacos|mushroom risotto|pho|"
        "grilled halloumi|lentil soup|paella|dumplings|shakshuka",
        "allergen": "peanuts|shellfish|penicillin|pollen|cat dander|lactose|gluten|sesame|bee stings|latex",
        "project": "billing migration|onboarding revamp|search relaunch|data warehouse|mobile app|"
        "checkout redesign|SSO rollout|pricing experiment|audit trail|reporting pipeline",
        "deliverable": "design doc|rollout plan|postmortem|budget proposal|test plan|release notes|"
        "architecture review|demo|roadmap",
        "component": "frontend|API|database schema|load testing|documentation|monitoring|deployment|"
        "authentication|caching",
        "team": "platform|growth|infrastructure|security|design|finance|legal|support|research|sales",
        "weekday": "Monday|Tuesday|Wednesday|Thursday|Friday",
        "month": "January|February|March|April|May|June|July|August|September|October|November|December",
        "hobby": "bouldering|sourdough baking|trail running|chess|watercolour painting|birdwatching|"
        "woodworking|salsa dancing|cycling|piano|pottery|sailing",
        "tool": "Neovim|VS Code|PyCharm|Emacs|tmux|Obsidian|Notion|Linear|Jira|Figma|Grafana",
        "language": "Python|Rust|Go|TypeScript|Kotlin|Elixir|Haskell|Swift|Java|C++",
        "time": "early morning|late evening|lunch break|weekend mornings|hour after stand-up|first hour of work",
        "pet": "a grey cat named Miso|a beagle called Pepper|two goldfish|a rescue greyhound|"
        "an old tabby named Biscuit|a parrot called Kiwi",
        "book": "Dune|Middlemarch|The Left Hand of Darkness|Piranesi|Gödel, Escher, Bach|Station Eleven|"
        "The Remains of the Day",
        "sport": "football|tennis|basketball|cricket|rugby|volleyball|badminton|handball",
        "vehicle": "an electric bike|a 2014 Golf|a cargo bike|a Vespa|a hybrid Corolla|the night train",
    }.items()
}

MEMORY_TEMPLATES: list[str] = [
    "My {relative} {name} lives in {city} and works as a {job}.",
    "I prefer {drink} to {drink} in the {time}.",
    "Favourite food is {food}, especially the one from the place near the office in {city}.",
    "I am allergic to {allergen}; always mention it when booking restaurants.",
    "The {project} {deliverable} is due on {weekday}; {name} owns the {component} part.",
    "{name} from the {team} team is the contact for anything about the {project}.",
    "Met {name} about the {project}; agreed to finish the {component} work by {month}.",
    "Planning a trip to {city} in {month} with my {relative}.",
    "I started {hobby} in {month} and practise on {weekday} evenings.",
    "Uses {tool} for notes and {language} for most side projects.",
    "Prefers code reviews in the {time}, never on {weekday} afternoons.",
    "Has {pet} that needs medication every {weekday}.",
    "Currently reading {book} and wants recommendations in the same vein.",
    "Watches {sport} on weekends and supports the local club in {city}.",
    "Commutes by {vehicle}; the trip to the office takes about forty minutes.",
    "{name}'s birthday is in {month}; they like {food} and {drink}.",
    "The {team} team stand-up moved to {weekday} mornings at nine.",
    "Wants reminders about the {project} {deliverable} two days before it is due.",
    "Does not eat {food} any more after a bad night in {city}.",
    "Learning {language} to help with the {component} rewrite.",
    "Asked to keep answers short and to use metric units.",
    "My {relative} is visiting from {city} in {month}; book a table for {food}.",
    "The {component} on-call rotation switches every {weekday} at noon.",
    "Budget for the {project} is owned by {name} in {team}.",
    "Prefers {tool} over {tool} for planning work.",
    "Dentist appointment in {month}; the clinic is near the station in {city}.",
    "Running a {hobby} workshop for the {team} team in {month}.",
    "Keeps a {drink} in the afternoon instead of a second coffee.",
    "Wrote the {deliverable} for the {project} with {name}.",
    "Moved from {city} to {city} three years ago for a job as a {job}.",
]

QUERY_TEMPLATES: list[str] = [
    "Where does my {relative} live?",
    "what do I like to drink in the {time}",
    "food allergies",
    "is {allergen} a problem for me",
    "when is the {project} {deliverable} due",
    "who owns the {component} for the {project}",
    "who is my contact in the {team} team",
    "trip to {city}",
    "what hobbies did I start this year",
    "which editor do I use",
    "favourite {food} place",
    "{name}'s birthday",
    "book recommendations like {book}",
    "how do I get to the office",
    "my pet's medication schedule",
    "on-call rotation for {component}",
    "what language am I learning",
    "who manages the {project} budget",
    "plans for {month}",
    "what does {name} do for a living",
    "restaurant for my {relative}'s visit",
    "{sport} team I support",
    "meeting notes with {name}",
    "when is stand-up for {team}",
    "dentist appointment",
]

_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random) -> str:
    """The template with each slot filled; a slot used twice gets two different words."""
    used: dict[str, set[str]] = {}

    def pick(match: re.Match[str]) -> str:
        key = match.group(1)
        taken = used.setdefault(key, set())
        word = rng.choice([w for w in WORDS[key] if w not in taken])
        taken.add(word)
        return word

    text = _SLOT.sub(pick, template)
    return text[0].upper() + text[1:]


def memory_sentences(n: int, rng: random.Random) -> list[str]:
    """n distinct memory sentences."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(fill(rng.choice(MEMORY_TEMPLATES), rng), None)
    return list(seen)


def queries(n: int, rng: random.Random, avoid: set[str] | None = None) -> list[str]:
    """n distinct query texts (distinct, so no query hits the server's query-embedding cache).

    Templates run out of distinct fillings quickly for the short ones, so a few take a suffix
    the way people add context to a question.
    """
    suffixes = ["", "", "", " please", " again", " (remind me)", " - quick check", " for next week"]
    avoid = set(avoid or ())
    out: dict[str, None] = {}
    while len(out) < n:
        text = fill(rng.choice(QUERY_TEMPLATES), rng) + rng.choice(suffixes)
        if text not in avoid:
            out.setdefault(text, None)
    return list(out)


def join(first: str, second: str) -> str:
    """A two-fact memory: the way assistants often store one note with a follow-up."""
    return f"{first} Also: {second[0].lower()}{second[1:]}"
