"""docker-compose.yml against the Compose specification's JSON schema (the copy vendored by
check-jsonschema, a test dependency), and the rules of issue 15 that a schema cannot say:
an HSM service, a one-shot init job, API replicas without a host port, secrets only as
files, healthchecks on /readyz, no example secret, a non-root multi-stage image."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads((importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                         / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    # The schema does catch mistakes: a service with a wrong type of port list fails.
    broken = _compose()
    broken["services"]["api"]["expose"] = {"8080": True}
    assert list(validator.iter_errors(broken))


def test_topology_and_rules() -> None:
    services = _compose()["services"]
    assert {"db", "hsm", "init", "api", "worker", "nginx"} <= set(services)
    assert services["hsm"]["command"][:3] == ["tawqi", "hsm", "serve"]
    assert services["init"]["restart"] == "no"
    assert "ports" not in services["api"]  # scalable: nginx reaches every replica
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["TAWQI_PKCS11_SERVER"].endswith(".sock")  # p11-kit's client only
        secret_vars = [k for k in env if k.endswith(("_PIN", "_TOKEN", "_PASSWORD", "_KEY"))]
        assert not secret_vars, secret_vars  # secrets only as TAWQI_*_FILE
        assert all(v.startswith("/run/secrets/") for k, v in env.items()
                   if k.endswith("_FILE"))
        assert "TAWQI_PUBLIC_URL" in env
        assert services[name]["depends_on"]["init"]["condition"] == \
            "service_completed_successfully"
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["nginx"]["healthcheck"]["test"])
    assert all("healthcheck" in services[n] for n in ("db", "hsm", "api", "nginx"))
    assert "POSTGRES_PASSWORD" not in services["db"]["environment"]
    files = [s["file"] for s in _compose()["secrets"].values()]
    assert not [f for f in files if "example" in f]


def test_only_the_hsm_service_holds_the_token_files() -> None:
    services = _compose()["services"]
    holding = sorted(name for name, service in services.items()
                     if any(str(v).split(":")[0] == "tokens" for v in service.get("volumes", [])))
    assert holding == ["hsm"]
    assert all("SOFTHSM2_CONF" not in services[n].get("environment", {})
               for n in ("init", "api", "worker"))


def test_image_is_multi_stage_non_root_and_ignores_local_state() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2 and "COPY --from=build" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "var"} <= set(ignored)
