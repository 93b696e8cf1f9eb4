"""Synthetic MBPP-like items: a task sentence, reference code and three asserts.

Expected values come from running the reference code, which is written here (trusted), in a
private namespace of this process at generation time.
"""

from __future__ import annotations

import random
import string
from typing import Any

# (task text, function name, reference code, argument generator)
_SPECS: list[tuple[str, str, str, Any]] = [
    (
        "Write a function to find the sum of the even numbers in a list.",
        "sum_even",
        "def sum_even(nums):\n    return sum(n for n in nums if n % 2 == 0)",
        lambda r: ([r.randint(-20, 50) for _ in range(r.randint(3, 8))],),
    ),
    (
        "Write a python function to count the vowels in a string.",
        "count_vowels",
        "def count_vowels(s):\n    count = 0\n    for ch in s.lower():\n"
        "        if ch in 'aeiou':\n            count += 1\n    return count",
        lambda r: ("".join(r.choice(string.ascii_letters) for _ in range(r.randint(5, 14))),),
    ),
    (
        "Write a function to reverse the order of the words in a sentence.",
        "reverse_words",
        "def reverse_words(s):\n    return ' '.join(reversed(s.split()))",
        lambda r: (" ".join(r.sample(["red", "fish", "blue", "sky", "tree", "moon", "cat"], 4)),),
    ),
    (
        "Write a function to find the difference between the largest and smallest value in a list.",
        "max_difference",
        "def max_difference(nums):\n    return max(nums) - min(nums)",
        lambda r: ([r.randint(-100, 100) for _ in range(r.randint(2, 7))],),
    ),
    (
        "Write a function to check whether a given string is a palindrome.",
        "is_palindrome",
        "def is_palindrome(s):\n    return s == s[::-1]",
        lambda r: (r.choice(["level", "rotor", "python", "abcba", "gemfinder", "noon", "bandit"]),),
    ),
    (
        "Write a function to remove duplicate elements from a list while keeping their order.",
        "remove_duplicates",
        "def remove_duplicates(items):\n    seen = set()\n    out = []\n    for x in items:\n"
        "        if x not in seen:\n            seen.add(x)\n            out.append(x)\n"
        "    return out",
        lambda r: ([r.randint(1, 6) for _ in range(r.randint(4, 9))],),
    ),
    (
        "Write a function to find the nth triangular number.",
        "triangular_number",
        "def triangular_number(n):\n    return n * (n + 1) // 2",
        lambda r: (r.randint(1, 60),),
    ),
    (
        "Write a function to count how many numbers in a list are greater than k.",
        "count_greater",
        "def count_greater(nums, k):\n    return len([n for n in nums if n > k])",
        lambda r: ([r.randint(0, 30) for _ in range(r.randint(3, 8))], r.randint(5, 25)),
    ),
    (
        "Write a function to find the second largest distinct number in a list.",
        "second_largest",
        "def second_largest(nums):\n    values = sorted(set(nums))\n    return values[-2]",
        lambda r: (r.sample(range(-50, 50), r.randint(3, 7)),),
    ),
    (
        "Write a function to count the occurrences of each character in a string.",
        "char_frequency",
        "def char_frequency(s):\n    counts = {}\n    for ch in s:\n"
        "        counts[ch] = counts.get(ch, 0) + 1\n    return counts",
        lambda r: ("".join(r.choice("abcab") for _ in range(r.randint(3, 7))),),
    ),
]


def mbpp_item(rng: random.Random) -> dict[str, Any]:
    text, name, code, make_args = rng.choice(_SPECS)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - project-written reference code, not model output
    func = namespace[name]
    tests, seen = [], set()
    while len(tests) < 3:
        args = make_args(rng)
        call = f"{name}({', '.join(repr(a) for a in args)})"
        if call in seen:
            continue
        seen.add(call)
        tests.append(f"assert {call} == {func(*args)!r}")
    return {"text": text, "code": code, "test_list": tests, "test_setup_code": ""}
