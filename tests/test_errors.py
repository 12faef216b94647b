"""The shared helpers of error messages."""

from __future__ import annotations

import pytest

from noisyclean.errors import listing


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
