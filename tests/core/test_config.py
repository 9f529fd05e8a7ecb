from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.errors import ConfigurationError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.policy_oid == ""  # a real CA names its own arc


def test_values_are_typed() -> None:
    settings = Settings.from_env({"TAWQI_SMTP_PORT": "2525", "TAWQI_SMTP_STARTTLS": "yes",
                                  "TAWQI_VAR_DIR": "/tmp/x"})
    assert settings.smtp_port == 2525
    assert settings.smtp_starttls is True
    assert settings.var_dir == Path("/tmp/x")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="TAWQI_DATABSE_URL"):
        Settings.from_env({"TAWQI_DATABSE_URL": "sqlite://"})


def test_bad_value_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"TAWQI_SMTP_PORT": "many"})
    with pytest.raises(ConfigurationError):
        Settings.from_env({"TAWQI_SMS_BACKEND": "pigeon"})


def test_secret_from_file_is_read_and_hidden(tmp_path: Path) -> None:
    secret = tmp_path / "so.pin"
    secret.write_text("87654321\n")
    settings = Settings.from_env({"TAWQI_SO_PIN_FILE": str(secret)})
    assert settings.so_pin == "87654321"
    assert "87654321" not in repr(settings)


def test_job_settings_are_checked() -> None:
    assert Settings.from_env({}).expiry_warning_thresholds == (60, 30, 7)
    assert Settings.from_env({"TAWQI_EXPIRY_WARNING_DAYS": "7, 90"}
                             ).expiry_warning_thresholds == (90, 7)
    for bad in ("soon", "30,0", ""):
        with pytest.raises(ConfigurationError, match="TAWQI_EXPIRY_WARNING_DAYS"):
            Settings.from_env({"TAWQI_EXPIRY_WARNING_DAYS": bad})
    with pytest.raises(ConfigurationError, match="TAWQI_JOB_TICK_SECONDS"):
        Settings.from_env({"TAWQI_JOB_TICK_SECONDS": "0"})
    # A period longer than half the CRL's life could let the CRL expire between two runs.
    with pytest.raises(ConfigurationError, match="TAWQI_JOB_CRL_REPUBLISH_SECONDS"):
        Settings.from_env({"TAWQI_JOB_CRL_REPUBLISH_SECONDS": "43200"})
    with pytest.raises(ConfigurationError, match="TAWQI_JOB_OCSP_RESIGN_SECONDS"):
        Settings.from_env({"TAWQI_JOB_OCSP_RESIGN_SECONDS": "43200"})
