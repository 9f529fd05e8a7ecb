"""The append-only directory of checkpoints: one file per checkpoint, never rewritten."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.anchors import Checkpoint, DirectoryAnchorStore


def _checkpoint(number: int, seq: int = 7) -> Checkpoint:
    return Checkpoint(number, seq, "ab" * 32, datetime(2026, 11, 29, 22, 0, tzinfo=UTC),
                      b"\x30\x03\x02\x01\x01")


def test_checkpoint_round_trips_through_json() -> None:
    checkpoint = _checkpoint(3)
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    with pytest.raises(ValueError):
        Checkpoint.from_json('{"format": "something else"}')
    with pytest.raises(ValueError):
        Checkpoint.from_json(checkpoint.to_json().replace("ab" * 32, "zz" * 32))


def test_files_are_created_once_and_read_only(tmp_path: Path) -> None:
    store = DirectoryAnchorStore(tmp_path / "anchors")
    assert store.entries() == []
    written = Path(store.append(_checkpoint(1)))
    assert written.name == "checkpoint-00000001.json"
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o444
    with pytest.raises(FileExistsError):
        store.append(_checkpoint(1, seq=9))  # the same number is never written twice
    (store.path / "checkpoint-00000002.json").write_text("not json")
    entries = store.entries()
    assert [e.name for e in entries] == ["checkpoint-00000001.json",
                                         "checkpoint-00000002.json"]
    assert entries[0].checkpoint == _checkpoint(1)
    assert entries[1].checkpoint is None and "not a checkpoint record" in entries[1].error
