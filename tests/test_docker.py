"""docker/compose.yaml renders with the compose tool at hand (the v2 `docker compose` plugin, else the v1
`docker-compose`): the three services are there and the database password appears nowhere in the rendering."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker" / "compose.yaml"


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_renders_without_the_password(tmp_path, monkeypatch):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    # A copy next to a password file made for the test: the repository holds no password file.
    folder = tmp_path / "docker"
    folder.mkdir()
    shutil.copy(COMPOSE_FILE, folder / "compose.yaml")
    password = secrets.token_hex(16)
    (folder / "pg_password.txt").write_text(password + "\n")
    monkeypatch.setenv("COMPOSE_PROFILES", "init,report")  # render the services behind profiles too
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "dml-benchmark")
    result = subprocess.run([*command, "-f", str(folder / "compose.yaml"), "config"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert {"postgres", "worker", "report"} <= set(rendered["services"])
    assert password not in result.stdout and password not in result.stderr
    assert rendered["secrets"]["pg_password"]["file"] == str(folder / "pg_password.txt")
    for service in ("postgres", "worker", "report"):
        assert [s if isinstance(s, str) else s["source"] for s in rendered["services"][service]["secrets"]] == ["pg_password"]
