"""skaffold.yaml and docker-compose.dev.yml, which cannot run here: validated against their
published JSON schemas (copied under deploy/tests/schemas/) and cross-checked against the
Dockerfiles, the chart and each other."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).parent / "schemas"
CHART = REPO / "deploy" / "helm" / "crossmodel"
COMPONENTS = {
    "edge": "services/edge/Dockerfile",
    "auth": "services/auth/Dockerfile",
    "router": "services/router/Dockerfile",
    "billing": "services/billing/Dockerfile",
    "usage": "services/usage/Dockerfile",
    "simulator": "tools/simulator/Dockerfile",
}
DATABASES = ("auth", "billing", "usage")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    return load(REPO / "skaffold.yaml")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(REPO / "docker-compose.dev.yml")


def schema_errors(schema_file: str, document: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / schema_file).read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]


def sanitized(image: str) -> str:
    """Skaffold's template name for an artifact: / - . : become _."""
    return re.sub(r"[/\-.:]", "_", image)


def nested(dotted: dict[str, str]) -> dict[str, Any]:
    """`--set a.b.c=v` pairs as a values tree."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# --- skaffold ---------------------------------------------------------------------------------


def test_skaffold_matches_its_schema(skaffold: dict[str, Any]) -> None:
    assert skaffold["apiVersion"] == "skaffold/v4beta14"
    assert schema_errors("skaffold-v4beta14.json", skaffold) == []


def test_skaffold_schema_catches_mistakes(skaffold: dict[str, Any]) -> None:
    broken = copy.deepcopy(skaffold)
    broken["deploy"]["helm"]["releases"][0]["chartPth"] = "deploy/helm/crossmodel"
    assert schema_errors("skaffold-v4beta14.json", broken)


def test_skaffold_builds_every_image_from_the_repo_root(skaffold: dict[str, Any]) -> None:
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    assert set(artifacts) == {f"crossmodel/{c}" for c in COMPONENTS}
    for component, dockerfile in COMPONENTS.items():
        artifact = artifacts[f"crossmodel/{component}"]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == dockerfile
        assert (REPO / dockerfile).is_file()


def releases(skaffold: dict[str, Any], profile: str | None) -> list[dict[str, Any]]:
    if profile is None:
        found: list[dict[str, Any]] = skaffold["deploy"]["helm"]["releases"]
        return found
    [selected] = [p for p in skaffold["profiles"] if p["name"] == profile]
    found = selected["deploy"]["helm"]["releases"]
    return found


@pytest.mark.parametrize("profile", [None, "dev"])
def test_skaffold_wires_each_built_image_into_the_chart(
    skaffold: dict[str, Any], profile: str | None
) -> None:
    [release] = [r for r in releases(skaffold, profile) if r["name"] == "crossmodel"]
    assert (REPO / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    expected = {}
    for component in COMPONENTS:
        name = sanitized(f"crossmodel/{component}")
        expected[f"components.{component}.image.repository"] = f"{{{{.IMAGE_REPO_{name}}}}}"
        expected[f"components.{component}.image.tag"] = (
            f"{{{{.IMAGE_TAG_{name}}}}}@{{{{.IMAGE_DIGEST_{name}}}}}"
        )
    assert templates == expected

    # What skaffold hands helm: the templates filled in with this run's images.
    digest = "sha256:" + "ab" * 32
    filled = {
        key: re.sub(
            r"\{\{\.IMAGE_(REPO|TAG|DIGEST)_crossmodel_(\w+)\}\}",
            lambda m: {"REPO": f"registry.test/crossmodel/{m.group(2)}", "TAG": "abc1234", "DIGEST": digest}[
                m.group(1)
            ],
            value,
        )
        for key, value in templates.items()
    }
    values: dict[str, Any] = {}
    for values_file in release.get("valuesFiles", []):
        values = merge(values, load(REPO / values_file))
    values = merge(values, nested(filled))
    rendered = helm_python.Chart.load(str(CHART)).render(
        values, name=release["name"], namespace="crossmodel", is_install=True
    )
    images = set()
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    images.add(container["image"])
    expected_images = {f"registry.test/crossmodel/{c}:abc1234@{digest}" for c in COMPONENTS}
    if profile is None:
        expected_images.discard(f"registry.test/crossmodel/simulator:abc1234@{digest}")
    assert images == expected_images


def test_skaffold_dev_profile_installs_the_infrastructure_first(skaffold: dict[str, Any]) -> None:
    dev = releases(skaffold, "dev")
    assert [r["name"] for r in dev] == ["crossmodel-infra", "crossmodel"]
    infra, app = dev
    assert (REPO / infra["chartPath"]).resolve() == REPO / "deploy" / "helm" / "crossmodel-devinfra"
    assert app["dependsOn"] == ["crossmodel-infra"]
    assert app["valuesFiles"] == ["deploy/helm/values-dev.yaml"]
    values = load(REPO / app["valuesFiles"][0])
    assert values["components"]["simulator"]["enabled"] is True
    # The values file names the infra release's services by the release name used here.
    assert values["kafka"]["bootstrap"].startswith(f"{infra['name']}-kafka:")
    assert f"//{infra['name']}-jaeger:" in values["otel"]["endpoint"]


def test_skaffold_port_forwards_name_rendered_services(
    skaffold: dict[str, Any], renders: dict[str, Any]
) -> None:
    [dev] = [p for p in skaffold["profiles"] if p["name"] == "dev"]
    services = {
        s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
        for variant in ("dev", "devinfra")
        for s in renders[variant].kind("Service")
    }
    for forward in dev["portForward"]:
        assert forward["resourceType"] == "service"
        assert forward["port"] in services[forward["resourceName"]]


# --- docker compose ---------------------------------------------------------------------------


def test_compose_matches_its_schema(compose: dict[str, Any]) -> None:
    assert schema_errors("compose-spec.json", compose) == []


def test_compose_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["edge"]["healtcheck"] = broken["services"]["edge"]["healthcheck"]
    assert schema_errors("compose-spec.json", broken)


def built_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc and svc.get("restart") != "no"
    }


def test_compose_builds_the_same_images_as_skaffold(
    compose: dict[str, Any], skaffold: dict[str, Any]
) -> None:
    built = built_services(compose)
    assert set(built) == set(COMPONENTS)
    artifacts = {a["docker"]["dockerfile"]: a["image"] for a in skaffold["build"]["artifacts"]}
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue
        assert svc["build"]["context"] == "."
        dockerfile = svc["build"]["dockerfile"]
        assert (REPO / dockerfile).is_file()
        repository, _, tag = svc["image"].partition(":")
        assert repository == artifacts[dockerfile], name
        assert tag == "dev"


def test_compose_and_chart_and_skaffold_have_one_service_set(
    compose: dict[str, Any], skaffold: dict[str, Any]
) -> None:
    chart_components = set(load(CHART / "values.yaml")["components"])
    skaffold_components = {a["image"].removeprefix("crossmodel/") for a in skaffold["build"]["artifacts"]}
    assert chart_components == skaffold_components == set(built_services(compose)) == set(COMPONENTS)


def test_compose_infrastructure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert not [k for k in kafka["environment"] if "ZOOKEEPER" in k]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:")
    for name in COMPONENTS:
        env = services[name].get("environment", {})
        if name != "simulator":
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        if image.startswith("crossmodel/"):
            continue
        _, _, tag = image.partition(":")
        assert re.fullmatch(r"\d+(\.\d+){1,2}(-[a-z]+)?", tag), f"{name}: {image} is not an exact version"


def test_compose_migrates_each_database_once_before_its_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in DATABASES:
        migrate = services[f"{name}-migrate"]
        service = services[name]
        assert migrate["command"] == ["migrate"]
        assert migrate["image"] == service["image"]
        assert migrate["build"] == service["build"]
        assert migrate["environment"] == service["environment"]
        assert migrate["restart"] == "no"
        assert migrate["read_only"] is True
        assert migrate["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in migrate["security_opt"]
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"][f"{name}-migrate"]["condition"] == "service_completed_successfully"
    assert {n for n in services if n.endswith("-migrate")} == {f"{n}-migrate" for n in DATABASES}


def test_compose_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if svc.get("restart") == "no":
            continue
        assert svc["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_compose_dependencies_exist_and_do_not_cycle(compose: dict[str, Any]) -> None:
    services = compose["services"]
    graph = {name: set(svc.get("depends_on", {})) for name, svc in services.items()}
    for name, deps in graph.items():
        assert deps <= set(services), name
        for dep, spec in services[name].get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy"
            if spec["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no"
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> None:
        assert node not in visiting, f"dependency cycle through {node}"
        if node in done:
            return
        visiting.add(node)
        for dep in graph[node]:
            visit(dep)
        visiting.remove(node)
        done.add(node)

    for node in graph:
        visit(node)


def test_compose_publishes_only_on_loopback(compose: dict[str, Any]) -> None:
    published = [(n, p) for n, svc in compose["services"].items() for p in svc.get("ports", [])]
    assert ("edge", "127.0.0.1:8080:8080") in published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), name


def test_compose_app_containers_are_hardened(compose: dict[str, Any]) -> None:
    for name in COMPONENTS:
        svc = compose["services"][name]
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "/tmp" in svc["tmpfs"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
    edge = compose["services"]["edge"]
    [spool] = [
        v for v in edge["volumes"] if v.split(":")[1] == edge["environment"]["CROSSMODEL_EDGE_SPOOL_DIR"]
    ]
    assert spool.split(":")[0] in compose["volumes"]


def test_compose_creates_the_topics_the_services_use(compose: dict[str, Any]) -> None:
    from crossmodel_billing.config import Settings as BillingSettings
    from crossmodel_usage.config import Settings as UsageSettings

    command = " ".join(compose["services"]["kafka-init"]["command"])
    topics = set(re.search(r"for topic in ([^;]+);", command).group(1).split())  # type: ignore[union-attr]
    fields = {**BillingSettings.model_fields}
    expected = {
        fields["usage_topic"].default,
        fields["dlq_topic"].default,
        UsageSettings.model_fields["dlq_topic"].default,
    }
    assert topics == expected
    assert compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_databases_come_from_the_init_script(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    [mount] = [v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    source = REPO / mount.split(":")[0]
    assert source.is_file()
    init_sql = source.read_text(encoding="utf-8")
    for name in DATABASES:
        url = compose["services"][name]["environment"][f"CROSSMODEL_{name.upper()}_DATABASE_URL"]
        credentials, location = url.split("://", 1)[1].split("@")
        user, password = credentials.split(":")
        assert location.startswith("postgres:5432/")
        assert f"CREATE ROLE {user} LOGIN PASSWORD '{password}';" in init_sql
        assert f"CREATE DATABASE {location.split('/')[-1]} OWNER {user};" in init_sql


def test_compose_kafka_init_command_is_valid_shell(compose: dict[str, Any]) -> None:
    init = compose["services"]["kafka-init"]
    assert init["entrypoint"] == ["/bin/sh", "-c"]
    # Compose turns $$ into $ before the shell sees it; -n parses without running.
    script = init["command"][0].replace("$$", "$")
    result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert "--if-not-exists" in script
