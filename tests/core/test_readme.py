"""The README documents every setting (a newcomer configures Tawqi from it)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from core.config import PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    # Rows may group variables: `TAWQI_SMTP_USER` / `TAWQI_SMTP_PASSWORD`, or `_PIN` suffixes.
    documented = set(re.findall(r"`(TAWQI_[A-Z0-9_]+)`", text))
    for row in re.findall(r"`(TAWQI_[A-Z0-9_]+)` / `_([A-Z0-9_]+)` / `_([A-Z0-9_]+)`", text):
        stem = row[0].rsplit("_", 1)[0]
        documented |= {f"{stem}_{row[1]}", f"{stem}_{row[2]}"}
    missing = [PREFIX + f.name.upper() for f in fields(Settings)
               if PREFIX + f.name.upper() not in documented]
    assert not missing, f"document these in README.md: {missing}"
