"""The environment the chart and docker-compose give each service, checked against the
service's own Settings class: every required setting is set, and every CROSSMODEL_<SVC>_*
variable names a real setting (a typo would otherwise be silently ignored)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("edge", "auth", "router", "billing", "usage")
# Variables read outside the Settings classes, by design.
READ_ELSEWHERE = {
    # The router reads one pair per catalog provider when it loads the catalog.
    "router": re.compile(r"^CROSSMODEL_ROUTER_PROVIDER_[A-Z0-9_]+_(BASE_URL|API_KEY)$"),
}
# Set by every deployment (and by `make run`) for the admin API of the edge, which its
# Settings do not declare yet.
AHEAD_OF_SETTINGS = {"CROSSMODEL_EDGE_ADMIN_TOKEN"}


def settings(service: str) -> tuple[str, dict[str, bool]]:
    """(env prefix, {VARIABLE: required}) of a service's Settings."""
    cls: Any = importlib.import_module(f"crossmodel_{service}.config").Settings
    prefix: str = cls.model_config["env_prefix"]
    return prefix, {prefix + name.upper(): field.is_required() for name, field in cls.model_fields.items()}


def check(service: str, env: dict[str, Any]) -> None:
    prefix, fields = settings(service)
    missing = [var for var, required in fields.items() if required and var not in env]
    assert not missing, f"{service}: required settings not set: {missing}"
    elsewhere = READ_ELSEWHERE.get(service)
    unknown = [
        var
        for var in env
        if var.startswith(prefix)
        and var not in fields
        and var not in AHEAD_OF_SETTINGS
        and not (elsewhere and elsewhere.match(var))
    ]
    assert not unknown, f"{service}: no such settings: {unknown}"


def chart_env(render: Any, service: str) -> dict[str, Any]:
    [workload] = [
        d
        for d in render.docs
        if d["kind"] in {"Deployment", "StatefulSet"}
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == service
    ]
    return {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("variant", ["default", "full", "dev"])
@pytest.mark.parametrize("service", SERVICES)
def test_chart_sets_the_settings(service: str, variant: str, renders: dict[str, Any]) -> None:
    check(service, chart_env(renders[variant], service))


@pytest.mark.parametrize("service", SERVICES)
def test_compose_sets_the_settings(service: str) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.dev.yml").read_text(encoding="utf-8"))
    check(service, compose["services"][service]["environment"])


@pytest.mark.parametrize("service", SERVICES)
def test_listen_addresses_match_the_settings_defaults(service: str, renders: dict[str, Any]) -> None:
    """The chart's ports are the services' own defaults (docs/services.md)."""
    cls: Any = importlib.import_module(f"crossmodel_{service}.config").Settings
    env = chart_env(renders["default"], service)
    if service == "edge":
        assert env["CROSSMODEL_EDGE_PORT"]["value"] == str(cls.model_fields["port"].default)
    else:
        default_port = cls.model_fields["listen"].default.rsplit(":", 1)[1]
        assert env[f"CROSSMODEL_{service.upper()}_LISTEN"]["value"] == f"0.0.0.0:{default_port}"


def test_the_checks_catch_a_misspelt_or_missing_setting() -> None:
    with pytest.raises(AssertionError, match="no such settings"):
        check(
            "usage",
            {
                "CROSSMODEL_USAGE_DATABASE_URL": "x",
                "CROSSMODEL_USAGE_KAFKA_BOOTSTRAP": "k",
                "CROSSMODEL_USAGE_DATABSE_URL": "y",
            },
        )
    with pytest.raises(AssertionError, match="required settings not set"):
        check("usage", {"CROSSMODEL_USAGE_DATABASE_URL": "x"})
