"""Synthetic multiple-choice items: ARC-like science, MMLU-like maths, Winogrande-like blanks.

The fact tables are written for this project; distractors come from the same table so every
option looks plausible.
"""

from __future__ import annotations

import random
from typing import Any

MAMMALS = ["whale", "bat", "horse", "dolphin", "rabbit", "elephant"]
NON_MAMMALS = ["shark", "eagle", "frog", "salmon", "lizard", "beetle", "penguin", "octopus"]
CONDUCTORS = ["copper wire", "an iron nail", "aluminum foil", "a silver spoon"]
INSULATORS = [
    "a wooden stick",
    "a rubber band",
    "a plastic straw",
    "a glass rod",
    "a cotton string",
]
STATES = {
    "water": "liquid",
    "iron": "solid",
    "oxygen": "gas",
    "helium": "gas",
    "mercury": "liquid",
    "table salt": "solid",
    "carbon dioxide": "gas",
    "olive oil": "liquid",
    "granite": "solid",
}
TOOLS = {
    "mass": "a balance",
    "temperature": "a thermometer",
    "length": "a meter stick",
    "volume of a liquid": "a graduated cylinder",
    "time": "a stopwatch",
    "air pressure": "a barometer",
}
NAMES = [
    "Maria",
    "Kevin",
    "Aisha",
    "Daniel",
    "Sofia",
    "Ethan",
    "Nadia",
    "Lucas",
    "Hana",
    "Victor",
    "Grace",
    "Mateo",
]


def _options(rng: random.Random, right: str, wrong: list[str], n: int = 4) -> tuple[list[str], int]:
    choices = rng.sample([w for w in wrong if w != right], n - 1) + [right]
    rng.shuffle(choices)
    return choices, choices.index(right)


def arc_item(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(4)
    if kind == 0:
        q = "Which of these animals is a mammal?"
        choices, gold = _options(rng, rng.choice(MAMMALS), NON_MAMMALS)
    elif kind == 1:
        q = "A student builds a simple circuit. Which object will best conduct electricity?"
        choices, gold = _options(rng, rng.choice(CONDUCTORS), INSULATORS)
    elif kind == 2:
        thing = rng.choice(list(STATES))
        q = f"At room temperature, in which state of matter is {thing} found?"
        choices, gold = (
            ["solid", "liquid", "gas", "plasma"],
            ["solid", "liquid", "gas"].index(STATES[thing]),
        )
    else:
        quantity = rng.choice(list(TOOLS))
        q = f"Which tool should a student use to measure {quantity}?"
        choices, gold = _options(rng, TOOLS[quantity], list(TOOLS.values()))
    # ARC sometimes keys its options 1-4 instead of A-D.
    labels = ["1", "2", "3", "4"] if rng.random() < 0.15 else ["A", "B", "C", "D"]
    return {"question": q, "choices": choices, "labels": labels, "answer": labels[gold]}


def _numeric_options(rng: random.Random, right: int) -> tuple[list[str], int]:
    wrong = {right + d for d in rng.sample([-10, -3, -2, -1, 1, 2, 3, 5, 10, 12], 6)} - {right}
    return _options(rng, str(right), [str(w) for w in sorted(wrong)])


def mmlu_item(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(12, 99), rng.randint(3, 19)
        q, right = f"What is the product of {a} and {b}?", a * b
    elif kind == 1:
        m = rng.randint(2, 40)
        q, right = f"How many centimeters are there in {m} meters?", m * 100
    elif kind == 2:
        a, b = rng.randint(3, 25), rng.randint(3, 25)
        q, right = f"What is the area of a rectangle with side lengths {a} and {b}?", a * b
    else:
        a, b, c = rng.randint(2, 9), rng.randint(-10, 10), rng.randint(-5, 9)
        sign = "+" if b >= 0 else "-"
        q, right = f"If f(x) = {a}x {sign} {abs(b)}, what is the value of f({c})?", a * c + b
    choices, gold = _numeric_options(rng, right)
    return {"question": q, "choices": choices, "answer": "ABCD"[gold]}


_WINO = [
    (
        "The {a} would not fit into the {b} because the _ was too {w}.",
        ("large", "small"),
        [("trophy", "suitcase"), ("sofa", "doorway"), ("piano", "elevator"), ("box", "car trunk")],
    ),
    (
        "The {a} was heavier than the {b}, so the _ was {w} to carry up the stairs.",
        ("harder", "easier"),
        [("bookcase", "lamp"), ("crate of tools", "bag of bread"), ("stone statue", "paper kite")],
    ),
]
_WINO_PEOPLE = [
    (
        "{a} helped {b} with the homework because _ was {w}.",
        ("good at algebra", "struggling with it"),
    ),
    ("{a} lent money to {b} because _ {w}.", ("had plenty saved", "was short this month")),
    ("{a} apologized to {b} because _ had {w}.", ("been rude earlier", "been hurt by the joke")),
    ("{a} asked {b} for directions because _ {w}.", ("was new in town", "knew the city well")),
    ("{a} beat {b} at chess because _ had {w}.", ("practiced for months", "never played before")),
    ("{a} gave {b} a ride home because _ {w}.", ("owned a car", "had missed the last bus")),
]


def winogrande_item(rng: random.Random) -> dict[str, Any]:
    first_is_answer = rng.random() < 0.5
    if rng.random() < 0.5:
        template, words, pairs = rng.choice(_WINO)
        a, b = rng.choice(pairs)
    else:
        template, words = rng.choice(_WINO_PEOPLE)
        a, b = rng.sample(NAMES, 2)
    sentence = template.format(a=a, b=b, w=words[0 if first_is_answer else 1])
    return {
        "question": sentence,
        "choices": [a, b],
        "labels": ["1", "2"],
        "answer": "1" if first_is_answer else "2",
    }
