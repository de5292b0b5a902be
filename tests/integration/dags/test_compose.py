"""docker-compose.yaml and Dockerfile stay valid without a Docker engine.

Where the compose plugin exists (``docker compose version`` works) the file is checked by
``docker compose config -q``. Where it does not (this project's CI machine has no Docker), a
structural check runs instead: it is not the compose-spec JSON schema, but it checks what breaks
a compose file in practice — unknown top-level keys, services without image/build, dangling
``depends_on``, bind mounts of folders that do not exist, undeclared named volumes, connection
JSON that does not parse after ``${VAR:-default}`` interpolation, simulator command lines their
own CLIs reject, and an Airflow image that drifted from the lock. Both paths run the checks below
that need no Docker; neither is a skip.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yaml"
TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "environment", "env_file", "volumes", "ports", "depends_on",
    "healthcheck", "restart", "user", "working_dir", "networks", "profiles", "expose", "labels", "init",
    "ulimits", "mem_limit", "deploy", "container_name", "hostname", "extra_hosts", "stop_grace_period",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def _interpolate(text: str) -> str:
    """Compose's variable syntax with nothing set in the environment: ``${X:-d}`` → d, ``$$`` → ``$``."""
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", text)
    unset = re.findall(r"(?<!\$)\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", text.replace("$$", ""))
    assert not unset, f"variables without a default (compose would warn and use empty): {unset}"
    return text.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(_interpolate(COMPOSE.read_text()))


def _has_compose_plugin() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    return subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0


def test_compose_file_is_valid(compose):
    if _has_compose_plugin():
        done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                              cwd=REPO)
        assert done.returncode == 0, done.stderr
    # Structural check (always; the only check where the compose plugin is missing).
    unknown = {k for k in compose if not k.startswith("x-")} - TOP_LEVEL
    assert not unknown, f"unknown top-level keys {unknown}"
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        assert set(svc) <= SERVICE_KEYS, f"{name}: unknown keys {set(svc) - SERVICE_KEYS}"
        assert "image" in svc or "build" in svc, f"{name}: needs image or build"
        if "build" in svc:
            context = svc["build"] if isinstance(svc["build"], str) else svc["build"].get("context", ".")
            assert (REPO / context / "Dockerfile").is_file(), f"{name}: no Dockerfile in build context {context}"
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name}: depends_on unknown service {dep}"
            assert dep != name, f"{name}: depends on itself"
            assert spec.get("condition", "service_started") in CONDITIONS, f"{name}: bad condition {spec}"
        for port in svc.get("ports") or []:
            assert re.fullmatch(r"[0-9.]+:\d+:\d+", str(port)), f"{name}: port {port!r} is not ip:host:container"
        for volume in svc.get("volumes") or []:
            source, target = str(volume).split(":")[:2]
            assert target.startswith("/"), f"{name}: volume target {target} not absolute"
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount source {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: named volume {source} not declared"
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key), f"{name}: bad env key {key}"
            assert value is None or isinstance(value, str), f"{name}: env {key} must be a string (quote it)"


def test_compose_runs_airflow_33_on_postgres_with_es_kibana_and_both_simulators(compose):
    services = compose["services"]
    commands = {name: svc.get("command") for name, svc in services.items()}
    for role in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert role in commands.values(), f"no Airflow {role} service"
    assert services["postgres"]["image"].startswith("postgres:")
    assert "postgresql" in services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert services["elasticsearch"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    assert services["kibana"]["image"].startswith("docker.elastic.co/kibana/kibana:")
    airflow = services["airflow-scheduler"]
    mounts = {v.split(":")[1] for v in airflow["volumes"]}
    assert {"/opt/airflow/dags", "/opt/threatq/include"} <= mounts


def test_compose_runs_the_installed_provider_not_the_checkout(compose):
    # The image installs the wheels; a mounted plugins/ or an include variable would hide a wheel
    # that lacks something (docs/packaging.md).
    for name, svc in compose["services"].items():
        sources = [str(v).split(":")[0] for v in svc.get("volumes") or []]
        assert not [s for s in sources if s.rstrip("/").endswith("plugins")], f"{name} mounts plugins/"
        env = svc.get("environment") or {}
        assert "AIRFLOW__CORE__PLUGINS_FOLDER" not in env and "THREATQ_PROVIDER_INCLUDE_DIR" not in env, name


def test_threatq_sim_data_ends_at_start_up(compose):
    from datetime import datetime, timedelta, timezone

    from threatq_simulators.threatq_cli import build_parser, corpus_bounds

    command = compose["services"]["threatq-sim"]["command"]
    parsed = build_parser().parse_args(shlex.split(command))
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert corpus_bounds(parsed.start, parsed.end, now=now) == (now - timedelta(days=7), now)


def test_every_published_port_is_bound_to_loopback_by_default(compose):
    # Airflow (every user admin, fixed JWT secret), Elasticsearch with security off, Kibana and
    # the simulators must not be reachable from the network unless BIND_ADDRESS says so.
    published = {name: svc["ports"] for name, svc in compose["services"].items() if svc.get("ports")}
    assert set(published) == {"airflow-apiserver", "elasticsearch", "kibana", "threatq-sim", "misp-double"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port!r} is published on every interface"
    raw = COMPOSE.read_text()
    assert raw.count("${BIND_ADDRESS:-127.0.0.1}:") == sum(len(p) for p in published.values())


def test_compose_connections_are_accepted_by_the_hooks(compose, monkeypatch):
    # The simulators speak plain http inside the compose network: each connection that carries a
    # credential opts in explicitly, else the hook would refuse it (allow_insecure_http).
    from threatq_provider.elasticsearch.hook import ElasticsearchEcsHook
    from threatq_provider.misp.hook import MispHook
    from threatq_provider.threatq.hook import ThreatQHook

    env = compose["services"]["airflow-scheduler"]["environment"]
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    threatq = ThreatQHook().client_kwargs()
    assert threatq["base_url"] == "http://threatq-sim:8700"
    assert threatq["auth"].kind == "client-credentials grant"  # the secret in Password, not in extra
    assert MispHook().client_kwargs["url"] == "http://misp-double:8481/"
    assert ElasticsearchEcsHook().client_kwargs()["hosts"] == ["http://elasticsearch:9200"]


def test_compose_connections_parse_and_point_at_the_compose_services(compose):
    from threatq_provider.provider_info import PROVIDER_INFO

    known_types = {c["connection-type"] for c in PROVIDER_INFO["connection-types"]}
    env = compose["services"]["airflow-scheduler"]["environment"]
    conns = {k: json.loads(v) for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
    assert set(conns) == {"AIRFLOW_CONN_THREATQ_DEFAULT", "AIRFLOW_CONN_ELASTICSEARCH_DEFAULT", "AIRFLOW_CONN_MISP_DEFAULT",
                          "AIRFLOW_CONN_AWS_DEFAULT"}
    aws = conns.pop("AIRFLOW_CONN_AWS_DEFAULT")  # the Amazon provider's type: the stage store of profile celery
    assert aws["conn_type"] == "aws"
    assert aws["extra"]["endpoint_url"].split("//", 1)[1].split(":")[0] in compose["services"]
    for key, conn in conns.items():
        assert conn["conn_type"] in known_types, f"{key}: unknown conn_type {conn['conn_type']}"
        host = conn["host"].split("//", 1)[1].split(":")[0]
        assert host in compose["services"], f"{key}: host {host} is not a compose service"


@pytest.mark.parametrize(("service", "module"), [("threatq-sim", "threatq_cli"), ("misp-double", "misp_cli")])
def test_simulator_command_lines_are_accepted_by_their_clis(compose, service, module):
    import importlib

    svc = compose["services"][service]
    cli = importlib.import_module(f"threatq_simulators.{module}")
    argv = shlex.split(svc["command"]) if isinstance(svc["command"], str) else list(svc["command"])
    parsed = cli.build_parser().parse_args(argv)  # SystemExit (a failure) on an unknown flag
    assert parsed.port


def test_dockerfile_builds_on_the_locked_airflow_version():
    dockerfile = (REPO / "Dockerfile").read_text()
    locked = re.search(r"^apache-airflow==(\S+)", (REPO / "requirements.txt").read_text(), re.M).group(1)
    base = re.search(r"AIRFLOW_IMAGE=apache/airflow:(\d+\.\d+\.\d+)", dockerfile).group(1)
    assert base == locked, f"Dockerfile base {base} != locked apache-airflow {locked}"
    assert "requirements.txt" in dockerfile
    # Wheels from scripts/build-wheels, installed only from that folder: no editable install.
    assert "scripts/build-wheels" in dockerfile
    assert "--no-index --find-links /tmp/threatq-wheels" in dockerfile
    assert "'airflow-provider-threatq[native]'" in dockerfile
    assert " -e " not in dockerfile and "THREATQ_PROVIDER_INCLUDE_DIR" not in dockerfile


def test_simulators_run_from_their_own_image_not_the_airflow_one(compose):
    # The simulators are their own distribution (simulators/); the Airflow image, which every
    # worker runs, installs the provider without them (docs/packaging.md).
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M)
    airflow_image = compose["services"]["airflow-scheduler"]["image"]
    for name in ("threatq-sim", "misp-double"):
        svc = compose["services"][name]
        assert svc["build"]["target"] in stages, f"{name}: no stage {svc['build']['target']} in the Dockerfile"
        assert svc["image"] != airflow_image
        assert svc["entrypoint"] == [name]
    simulators_stage = dockerfile.split("AS simulators\n", 1)[1].split("\nFROM ", 1)[0]
    assert "--find-links /tmp/threatq-wheels" in simulators_stage and " threatq-simulators" in simulators_stage
    airflow_stage = dockerfile.rsplit("\nFROM ${AIRFLOW_IMAGE}\n", 1)[1]
    assert "simulators" not in airflow_stage
    assert "COPY simulators /src/simulators" in dockerfile  # scripts/build-wheels builds its wheel


def test_celery_profile_adds_the_scale_out_shape_and_stays_opt_in(compose):
    """Profile "celery": Redis, the S3-compatible store with its bucket, two Celery workers; the
    default (no profile, no variables) keeps the LocalExecutor and a local stage folder."""
    services = compose["services"]
    celery = {name for name, svc in services.items() if "celery" in (svc.get("profiles") or [])}
    assert celery == {"redis", "s3", "s3-init", "airflow-worker-1", "airflow-worker-2"}
    assert all(svc.get("profiles") in (None, ["celery"]) for svc in services.values())
    for name in ("airflow-scheduler", "airflow-apiserver", "airflow-dag-processor", "airflow-triggerer", "postgres"):
        assert not services[name].get("profiles"), f"{name} must run without the profile"

    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"  # ${AIRFLOW_EXECUTOR:-LocalExecutor}
    assert env["AIRFLOW_VAR_THREATQ_STAGE_ROOT"].startswith("file://")
    raw = COMPOSE.read_text()
    assert "${AIRFLOW_EXECUTOR:-LocalExecutor}" in raw and "${THREATQ_STAGE_ROOT:-file://" in raw
    assert env["AIRFLOW__CELERY__BROKER_URL"].split("//", 1)[1].split(":")[0] == "redis"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://") and "@postgres/" in env[
        "AIRFLOW__CELERY__RESULT_BACKEND"]

    workers = [services[f"airflow-worker-{i}"] for i in (1, 2)]
    assert {w["hostname"] for w in workers} == {"airflow-worker-1", "airflow-worker-2"}
    for worker in workers:
        assert worker["command"] == "celery worker"
        assert worker["image"] == services["airflow-scheduler"]["image"]  # the same image as the scheduler
        assert worker["environment"] == env  # same executor, broker, connections and stage root
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
        assert worker["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
        assert not worker.get("ports")

    # The store, its bucket and the connection agree; the stage root the header names uses them.
    store = services["s3"]
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert store["image"].split(":")[0].endswith("s3proxy") and "minio" not in store["image"]
    assert (aws["login"], aws["password"]) == (store["environment"]["S3PROXY_IDENTITY"],
                                              store["environment"]["S3PROXY_CREDENTIAL"])
    assert aws["extra"]["endpoint_url"] == "http://s3:80" == store["environment"]["S3PROXY_ENDPOINT"].replace(
        "0.0.0.0", "s3")
    init = "\n".join(services["s3-init"]["command"])
    assert 'create_bucket(Bucket="tq-stage")' in init and "http://s3:80" in init
    assert aws["login"] in init and aws["password"] in init
    assert "THREATQ_STAGE_ROOT=s3://aws_default@tq-stage/stage" in raw
    compile(services["s3-init"]["command"][2], "s3-init", "exec")  # the one-shot script parses
