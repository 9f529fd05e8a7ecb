"""Only hsm/ (and tests/, and bench/ for the bare baseline) may import python-pkcs11; hsm/
imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"hsm", "tests", "bench"}
OUR_PACKAGES = {"core", "quotas", "delivery", "pki", "hsm", "api", "bench", "tests", "scripts"}
SKIP_DIRS = {".venv", "venv", ".git", "var", "build", "dist", "node_modules", "__pycache__"}


def _python_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if any(part in SKIP_DIRS or part.startswith(".") for part in parts[:-1]):
            continue
        files.append(path)
    return files


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            roots.add(node.args[0].value.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_pkcs11_is_imported_only_by_hsm() -> None:
    files = _python_files()
    assert any(p.relative_to(ROOT).parts[0] == "hsm" for p in files)
    offenders = [str(path.relative_to(ROOT)) for path in files
                 if path.relative_to(ROOT).parts[0] not in ALLOWED
                 and "pkcs11" in _imported_roots(path)]
    assert offenders == [], f"pkcs11 imported outside hsm/: {offenders}"


def test_hsm_imports_nothing_of_ours() -> None:
    offenders = {}
    for path in (ROOT / "hsm").rglob("*.py"):
        ours = (_imported_roots(path) & OUR_PACKAGES) - {"hsm"}
        if ours:
            offenders[str(path.relative_to(ROOT))] = sorted(ours)
    assert offenders == {}


def test_the_scanner_sees_imports() -> None:
    sample = ROOT / "hsm" / "library.py"
    assert "pkcs11" in _imported_roots(sample)
