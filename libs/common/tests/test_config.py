from __future__ import annotations

import pytest
from pydantic_settings import SettingsConfigDict

from crossmodel_common.config import ServiceSettings, load_settings


class _Demo(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMODEL_DEMO_", extra="ignore", frozen=True)

    database_url: str
    port: int = 1


def test_a_missing_and_an_invalid_variable_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CROSSMODEL_DEMO_DATABASE_URL", raising=False)
    monkeypatch.setenv("CROSSMODEL_DEMO_PORT", "not-a-number")
    with pytest.raises(SystemExit) as stop:
        load_settings(_Demo, "demo")
    message = str(stop.value.code)
    assert message.startswith("crossmodel-demo: cannot start")
    assert "CROSSMODEL_DEMO_DATABASE_URL (missing)" in message
    assert "CROSSMODEL_DEMO_PORT:" in message


def test_valid_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSMODEL_DEMO_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("CROSSMODEL_DEMO_PORT", "5")
    settings = load_settings(_Demo, "demo")
    assert (settings.database_url, settings.port) == ("postgresql://x", 5)
