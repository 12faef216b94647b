"""The shared helpers of error messages."""

from __future__ import annotations

import numpy as np
import pytest

from noisyclean.errors import is_int, is_number, listing


@pytest.mark.parametrize("items,kwargs,expected", [
    ([], {}, ""),
    (["a"], {}, "'a'"),
    (["a", "b", "c", "d", "e"], {}, "'a', 'b', 'c', 'd', 'e'"),
    (["a", "b", "c", "d", "e", "f", "g"], {}, "'a', 'b', 'c', 'd', 'e' and 2 more"),
    (["a", "b", "c", "d"], {"limit": 3}, "'a', 'b', 'c' and 1 more"),
    ([2, 3, 9], {"limit": 2, "quote": False}, "2, 3 and 1 more"),
    (["x (rows 2, 4)", "y (rows 3, 5)"], {"quote": False, "sep": "; "},
     "x (rows 2, 4); y (rows 3, 5)"),
    (["a\\b.png", "it's"], {}, "'a\\\\b.png', \"it's\""),  # repr: unambiguous names
    ((str(i) for i in range(12)), {"limit": 10, "quote": False},
     "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more"),  # any iterable, a generator too
])
def test_listing(items: object, kwargs: dict, expected: str) -> None:
    assert listing(items, **kwargs) == expected


@pytest.mark.parametrize("value,integer,number", [
    (0, True, True),
    (-3, True, True),
    (2.5, False, True),
    (2.0, False, True),  # a float is not a count, even a whole one
    (True, False, False),  # an int to isinstance, never a count or a rate
    (False, False, False),
    (np.int64(3), False, False),  # as before: only Python's own numbers
    (np.float64(0.5), False, True),  # a subclass of float
    ("3", False, False),
    (None, False, False),
])
def test_is_int_and_is_number(value: object, integer: bool, number: bool) -> None:
    assert is_int(value) is integer
    assert is_number(value) is number
