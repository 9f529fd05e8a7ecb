"""The layering rules of docs/architecture.md, read from the source (no import is run).

- a domain (core, quotas, delivery, pki, hsm) never imports ``api``;
- ``pki`` proper never imports ``delivery``, ``quotas`` or ``pki.signing`` (``pki.signing``
  sits on top of ``pki``);
- ``quotas`` never imports ``delivery`` or ``pki``;
- a blueprint module never imports another blueprint module (not even of its own package:
  what two share lives outside ``api/blueprints``, e.g. ``api.csc_common``);
- a blueprint module registers routes only on a blueprint (or ``Routes``) it makes itself,
  never by import side effect on one it imported: the app factory assembles a package's
  blueprint from its modules' ``routes``;
- nothing outside ``api/blueprints`` imports a blueprint (the CLI, the web pages, the
  composition root, ``bench/``...): ``api.app`` registers them by name;
- only ``hsm/`` imports python-pkcs11 (``bench/`` and ``tests/`` may, for the bare baseline).

Every import counts: module level or inside a function, ``import x``, ``from x import y``
(``x.y`` when ``y`` is a module), relative imports, ``importlib.import_module("x")`` and
``__import__("x")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "venv", ".git", "var", "build", "dist", "node_modules", "__pycache__"}
DOMAINS = ("core", "quotas", "delivery", "pki", "hsm")
BLUEPRINTS = "api.blueprints"


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of this tree."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(source: str, module: str, *, package: bool = False) -> set[str]:
    """Every module name ``source`` (the text of ``module``) imports."""
    found: set[str] = set()
    here = module.split(".") if package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names
                         if is_module(f"{stem}.{alias.name}"))
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "__import__") or \
                    (isinstance(func, ast.Attribute) and func.attr == "import_module"):
                found.add(node.args[0].value)
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def blueprint_of(name: str) -> str | None:
    """``api.blueprints.delivery.contacts`` -> ``delivery``; the registry itself -> None."""
    if not within(name, BLUEPRINTS) or name == BLUEPRINTS:
        return None
    return name.split(".")[2]


def is_blueprint_module(name: str) -> bool:
    """A module under ``api/blueprints`` (the registry ``api.blueprints`` is not one)."""
    return within(name, BLUEPRINTS) and name != BLUEPRINTS


#: Calls that add routes or hooks to a Flask blueprint (or to a ``Routes``).
REGISTERING = {"operation", "route", "add_url_rule", "before_request", "after_request",
               "errorhandler", "register", "record", "record_once", "register_blueprint"}


def foreign_registrations(source: str) -> list[str]:
    """Each ``x.operation(...)``-like call (decorator or not) on an object the module did
    not make itself but imported (``from m import bp``, ``import m`` then ``m.bp.route``)."""
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.update(a.asname or a.name for a in node.names)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in REGISTERING):
            continue
        root: ast.expr = node.func.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in imported:
            found.append(f"{ast.unparse(node.func)} (line {node.lineno})")
    return found


@dataclass(frozen=True)
class Rule:
    says: str
    applies: Callable[[str], bool]
    forbids: Callable[[str, str], bool]  # (importer, imported) -> forbidden


RULES = [
    Rule("a domain imports api",
         lambda m: any(within(m, d) for d in DOMAINS),
         lambda m, imp: within(imp, "api")),
    Rule("pki imports delivery, quotas or pki.signing",
         lambda m: within(m, "pki") and not within(m, "pki.signing"),
         lambda m, imp: any(within(imp, p) for p in ("delivery", "quotas", "pki.signing"))),
    Rule("quotas imports delivery or pki",
         lambda m: within(m, "quotas"),
         lambda m, imp: within(imp, "delivery") or within(imp, "pki")),
    Rule("a blueprint module imports another blueprint module",
         is_blueprint_module,
         lambda m, imp: is_blueprint_module(imp) and imp != m),
    Rule("a blueprint is imported from outside api/blueprints (CLI, web, wiring, bench...)",
         lambda m: not within(m, BLUEPRINTS) and not within(m, "tests"),
         lambda m, imp: blueprint_of(imp) is not None),
    Rule("pkcs11 is imported outside hsm/",
         lambda m: not any(within(m, p) for p in ("hsm", "bench", "tests")),
         lambda m, imp: within(imp, "pkcs11")),
]


def violations(sources: Iterable[tuple[str, str, bool]]) -> list[str]:
    """``(module, source, is_package)`` -> one line per forbidden import."""
    found = []
    for module, source, package in sources:
        imports = imported_modules(source, module, package=package)
        for rule in RULES:
            if rule.applies(module):
                found.extend(f"{module} imports {imp}: {rule.says}"
                             for imp in sorted(imports) if rule.forbids(module, imp))
        if is_blueprint_module(module):
            found.extend(f"{module} calls {call}: a blueprint module registers routes on "
                         f"a blueprint it imported (import side effect)"
                         for call in foreign_registrations(source))
    return found


def tree() -> list[tuple[str, str, bool]]:
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if "migrations" in relative.parts:  # Alembic scripts, loaded by path
            continue
        files.append((module_name(relative), path.read_text(encoding="utf-8"),
                      path.name == "__init__.py"))
    return files


def test_the_tree_keeps_the_layers() -> None:
    files = tree()
    assert {m.split(".")[0] for m, _s, _p in files} >= {*DOMAINS, "api", "bench", "tests"}
    found = violations(files)
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_each_rule_catches_its_import() -> None:
    samples = [
        ("quotas.ledger", "from api.routing import Call\n"),
        ("delivery.requests", "def f():\n    import api.wiring\n"),
        ("pki.ca", "from delivery import holders\n"),
        ("pki.ocsp", "from quotas.ledger import reserve\n"),
        ("pki.crl", "from pki.signing.pades import PadesService\n"),
        ("pki.crl", "from pki import signing\n"),
        ("quotas.policy", "from pki.models import CertificateRecord\n"),
        ("quotas.policy", "import delivery.models\n"),
        ("api.blueprints.verify", "from api.blueprints.csc import bp\n"),
        ("api.blueprints.verify", "from . import csc\n"),
        ("api.blueprints.certificates", "from api.blueprints import pki_public\n"),
        ("api.blueprints.csc.v1", "from api.blueprints import csc\n"),
        ("api.blueprints.csc.v1", "from . import SERIAL\n"),
        ("api.blueprints.delivery", "import api.blueprints.delivery.contacts\n"),
        ("api.blueprints.delivery", "importlib.import_module('api.blueprints.delivery.holders')\n"),
        ("api.blueprints.delivery.contacts", "from api.blueprints.delivery.common import PIN\n"),
        ("api.blueprints.delivery.contacts",
         "from api.delivery_common import bp\n@bp.operation('GET', '/x')\ndef f(): ...\n"),
        ("api.blueprints.delivery.holders",
         "import api.delivery_common as c\nc.bp.add_url_rule('/x', 'x', print)\n"),
        ("api.blueprints.delivery.holders",
         "from api import delivery_common\n@delivery_common.bp.route('/x')\ndef f(): ...\n"),
        ("api.cli.pki", "from api.blueprints.pki_public import bp\n"),
        ("api.web.pages", "import importlib\nimportlib.import_module('api.blueprints.quotas')\n"),
        ("api.wiring.root", "from api.blueprints import csc\n"),
        ("bench.verify", "from api.blueprints.verify import report_out\n"),
        ("pki.signer", "import pkcs11\n"),
        ("delivery.envelopes", "from pkcs11 import Mechanism\n"),
        ("api.cli.db", "__import__('pkcs11')\n"),
    ]
    for module, source in samples:
        assert violations([(module, source, False)]), (module, source)


#: module -> an import its rules allow
ALLOWED = {
    "pki.signing.service": "from pki.models import CertificateRecord\n",
    "pki.signing.pades": "from pki.signer import Signer\n",
    "delivery.personalisation": "from pki import issuance\n",
    "api.app": "from api.blueprints import BLUEPRINT_MODULES\n",
    "api.blueprints.csc": "from api.wiring.flaskapp import wiring\n",
    "api.blueprints.csc.v1": "from api import csc_common as csc\n",
    "api.blueprints.delivery.contacts": ("from api.routing import Routes\nroutes = Routes()\n"
                                         "@routes.operation('GET', '/x')\ndef f(): ...\n"),
    "api.blueprints.quotas": ("from api.routing import ApiBlueprint\n"
                              "bp = ApiBlueprint('quotas', __name__)\n"
                              "@bp.operation('GET', '/x')\ndef f(): ...\n"),
    "api.blueprints.auth": "from flask import request\nrequest.form.get('x')\n",
    "tests.api.test_csc": "from api.blueprints import csc\n",
    "bench.hsm_sign": "import pkcs11\n",
    "hsm.library": "import pkcs11\n",
}


def test_what_the_rules_allow() -> None:
    for module, source in ALLOWED.items():
        assert violations([(module, source, False)]) == [], (module, source)
