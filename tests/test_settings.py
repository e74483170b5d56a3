"""Settings come from the environment through typed readers that fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (lambda: env.env_bool("X_TEST", False), "perhaps", "X_TEST must be one of true/false"),
        (lambda: env.env_int("X_TEST", 1), "ten", "X_TEST must be an integer, got 'ten'"),
        (lambda: env.env_int("X_TEST", 1, minimum=1), "0", "X_TEST must be at least 1, got 0"),
        (lambda: env.env_float("X_TEST", 1.0), "fast", "X_TEST must be a number"),
    ],
)
def test_bad_values_stop_the_process_with_the_variable_named(monkeypatch, reader, value, message) -> None:
    monkeypatch.setenv("X_TEST", value)
    with pytest.raises(env.ImproperlyConfiguredEnv, match=message):
        reader()


def test_readers_parse_good_values_and_fall_back_to_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("X_BOOL", " Yes ")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    monkeypatch.delenv("X_MISSING", raising=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret_file))
    assert env.env_bool("X_BOOL", False) is True
    assert env.env_list("X_LIST") == ["a", "b", "c"]
    assert env.env_int("X_MISSING", 7) == 7
    assert env.env_secret("X_SECRET") == "from-a-file"


def _manage(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "HTTPS", "SECRET_KEY"))}
    environ.update(extra_env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120, check=False)


def test_check_deploy_passes_with_production_values(tmp_path) -> None:
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="false", HTTPS="true", SECRET_KEY="k" * 20 + "-production-secret-key-with-enough-entropy-9f8e7d",
        ALLOWED_HOSTS="switchboard.example.com", VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_bad_value_fails_at_start_up_naming_the_variable(tmp_path) -> None:
    result = _manage("check", MAX_REQUEST_BODY="lots", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "MAX_REQUEST_BODY must be an integer, got 'lots'" in result.stderr
