"""core.memo: a bounded cache that drops the least recently used entry first."""

from __future__ import annotations

from core.memo import Memo


def test_the_least_recently_used_entry_goes_first() -> None:
    memo: Memo[str, int] = Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert memo.get("b") is None
    assert (memo.get("a"), memo.get("c"), len(memo)) == (1, 3, 2)


def test_a_value_is_made_once_then_kept() -> None:
    memo: Memo[str, list[int]] = Memo(4)
    made: list[str] = []

    def make() -> list[int]:
        made.append("x")
        return [1]

    first = memo.get_or_make("x", make)
    assert memo.get_or_make("x", make) is first
    assert made == ["x"]
    memo.clear()
    assert len(memo) == 0 and memo.get("x") is None
