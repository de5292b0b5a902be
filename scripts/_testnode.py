"""Shared code of ``scripts/elasticsearch`` and ``scripts/opensearch``: one local test node.

Each script describes its product in a :class:`Product` (Maven artifact, launcher, environment
variable names, settings) and calls :func:`main`. Both distributions are the products' own
``integ-test-zip`` artifacts from Maven Central, fetched with ``mvn`` into ``~/.m2`` and unpacked
into a git-ignored cache; the node runs with the newer JDK on the machine, bound to 127.0.0.1,
single-node, small heap, disk watermarks off, and writes its PID file under its run folder.
Neither product runs as root: as root the script creates a system user and runs the node as it.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMURIN_25 = "/usr/lib/jvm/temurin-25-jdk-amd64"


@dataclass(frozen=True)
class Product:
    """What differs between the two products.

    :param name: ``elasticsearch`` or ``opensearch`` (launcher, folders, messages).
    :param env: prefix of this script's environment variables (``TQ_ES``, ``TQ_OS``).
    :param group: Maven group of the ``integ-test-zip`` artifact.
    :param default_version: version fetched unless ``<env>_VERSION`` says otherwise.
    :param default_port: HTTP port unless ``<env>_PORT`` says otherwise.
    :param launcher_env: the launcher's own variable prefix (``ES``, ``OPENSEARCH``).
    :param run_user: system user that runs the node when the script runs as root.
    :param extra_settings: node settings beyond the common ones.
    :param settings_if_module: setting → value, written only when ``modules/<module>`` exists.
    """

    name: str
    env: str
    group: str
    default_version: str
    default_port: int
    launcher_env: str
    run_user: str
    extra_settings: dict[str, object] = field(default_factory=dict)
    settings_if_module: dict[str, tuple[str, object]] = field(default_factory=dict)


class Node:
    """Paths and settings of one product's node, read from the environment once."""

    def __init__(self, product: Product) -> None:
        self.p = product
        env = lambda key, default: os.environ.get(f"{product.env}_{key}", default)  # noqa: E731
        self.version = env("VERSION", product.default_version)
        self.port = int(env("PORT", str(product.default_port)))
        self.transport_port = int(env("TRANSPORT_PORT", str(self.port + 100)))
        self.heap = env("HEAP", "512m")
        # One node of a multi-node cluster on loopback (scripts/cluster): <env>_SEED_HOSTS lists the
        # transport addresses of every node; unset, the node is single-node.
        self.cluster_name = env("CLUSTER_NAME", "tq-local")
        self.node_name = env("NODE_NAME", "tq-node")
        self.seed_hosts = [h.strip() for h in env("SEED_HOSTS", "").split(",") if h.strip()]
        # Read on the cluster's first start only (bootstrapping), ignored once it has formed.
        self.initial_masters = [n.strip() for n in env("INITIAL_MASTERS", self.node_name).split(",") if n.strip()]
        self.start_timeout = float(env("START_TIMEOUT", "240"))
        self.java_home_choice = env("JAVA_HOME", None)
        self.artifact = f"{product.group}:{product.name}:{self.version}:zip"
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = self._home_root(env("HOME", None)) / self.version
        self.dist = self.home / f"{product.name}-{self.version}"
        self.run = self.home / f"run-{self.port}"
        self.pid_file = self.run / f"{product.name}.pid"

    def _home_root(self, explicit: str | None) -> Path:
        if explicit:
            return Path(explicit)
        # As root the node runs as another user; a clone under a private folder (mode 700) is out of
        # its reach, so the cache moves to a shared folder instead.
        if os.geteuid() == 0 and not _world_traversable(REPO):
            return Path(f"/var/tmp/tq-{self.p.name}")
        return REPO / ".cache" / self.p.name

    def log(self, msg: str) -> None:
        print(f"{self.p.name}: {msg}", file=sys.stderr, flush=True)

    def fail(self, msg: str) -> None:
        sys.exit(f"{self.p.name}: {msg}")

    # -- distribution ---------------------------------------------------------------------------

    def java_home(self) -> str:
        """Pick the JDK: an explicit choice, else Temurin 25, else JAVA_HOME."""
        for candidate in (self.java_home_choice, TEMURIN_25, os.environ.get("JAVA_HOME")):
            if candidate and (Path(candidate) / "bin" / "java").exists():
                return candidate
        self.fail(f"no JDK found; set {self.p.env}_JAVA_HOME (Temurin 21+ works)")
        raise AssertionError  # unreachable: fail exits

    def fetch(self) -> None:
        """Download the distribution with mvn (cached in ~/.m2) and unpack it once."""
        if (self.dist / "bin" / self.p.name).exists():
            return
        if not shutil.which("mvn"):
            self.fail("mvn is not installed; it fetches the test distribution")
        download = self.home / "download"
        download.mkdir(parents=True, exist_ok=True)
        self.log(f"fetching {self.artifact} with mvn")
        cmd = ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={self.artifact}",
               f"-DoutputDirectory={download}", "-Dmdep.overWriteReleases=false"]
        env = dict(os.environ)
        if Path(TEMURIN_25, "bin", "java").exists():
            env["JAVA_HOME"] = TEMURIN_25  # newer artifacts' metadata asks for a newer JDK
        proc = subprocess.run(cmd, cwd=download, capture_output=True, text=True, env=env)
        zip_path = download / f"{self.p.name}-{self.version}.zip"
        if proc.returncode != 0 or not zip_path.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            self.fail(f"mvn could not fetch {self.artifact}:\n{tail}")
        tmp = self.home / "unpack.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                target = tmp / info.filename
                zf.extract(info, tmp)
                mode = info.external_attr >> 16
                if mode and not info.is_dir():
                    # zipfile drops Unix modes; the launch scripts need their exec bits.
                    os.chmod(target, stat.S_IMODE(mode) | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        (tmp / f"{self.p.name}-{self.version}").rename(self.dist)
        shutil.rmtree(tmp, ignore_errors=True)
        zip_path.unlink()
        self.log(f"unpacked into {self.dist}")

    # -- process --------------------------------------------------------------------------------

    def read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def health(self, timeout: float = 2.0) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/_cluster/health", timeout=timeout) as resp:
                return json.load(resp)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return None  # http.client's errors: something that is not HTTP answers (a transport port)

    def listening(self, port: int) -> bool:
        """Anything accepting TCP connections on the port, HTTP or not."""
        with socket.socket() as sock:
            sock.settimeout(1.0)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def run_user(self) -> pwd.struct_passwd | None:
        """Neither product runs as root: as root, run the node as a dedicated system user."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.p.run_user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", self.p.run_user], check=True)
            return pwd.getpwnam(self.p.run_user)

    def settings(self) -> dict[str, object]:
        settings: dict[str, object] = {
            "cluster.name": self.cluster_name,
            "node.name": self.node_name,
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "path.data": str(self.run / "data"),
            "path.logs": str(self.run / "logs"),
            # The disk may be nearly full on shared machines; never go read-only for that.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            # Tests clean up their indices by prefix wildcards.
            "action.destructive_requires_name": False,
            **self.p.extra_settings,
        }
        if self.seed_hosts:
            settings["discovery.seed_hosts"] = self.seed_hosts
            settings["cluster.initial_master_nodes"] = self.initial_masters
        else:
            settings["discovery.type"] = "single-node"
        for module, (key, value) in self.p.settings_if_module.items():
            if (self.dist / "modules" / module).exists():
                settings[key] = value
        return settings

    def prepare_run_dir(self, user: pwd.struct_passwd | None, fresh: bool) -> Path:
        run, dist = self.run, self.dist
        if fresh:
            shutil.rmtree(run, ignore_errors=True)
        conf = run / "config"
        shutil.rmtree(conf, ignore_errors=True)  # config is rewritten each start
        shutil.copytree(dist / "config", conf)
        (conf / f"{self.p.name}.keystore").unlink(missing_ok=True)
        for sub in ("data", "logs", "tmp"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        (conf / f"{self.p.name}.yml").write_text(
            "".join(f"{k}: {json.dumps(v)}\n" for k, v in self.settings().items()))
        # Heap from the launcher's environment; GC logs and heap dumps in our logs folder, not in
        # the distribution.
        jvm = (conf / "jvm.options").read_text().splitlines()
        jvm = [line for line in jvm if "-Xlog:" not in line and "HeapDumpPath" not in line
               and not line.lstrip().startswith(("-Xms", "-Xmx"))]
        jvm += [f"-XX:HeapDumpPath={run / 'logs'}",
                f"-Xlog:gc*:file={run / 'logs' / 'gc.log'}:utctime:filecount=2,filesize=16m"]
        (conf / "jvm.options").write_text("\n".join(jvm) + "\n")
        if user is not None:
            for path in [run, *run.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
            # The run user must read the distribution and traverse every parent folder.
            for path in [dist, *dist.rglob("*")]:
                mode = path.stat().st_mode
                extra = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0)
                os.chmod(path, stat.S_IMODE(mode) | extra)
            probe = subprocess.run(["runuser", "-u", user.pw_name, "--", "test", "-r",
                                    str(dist / "config" / "jvm.options")])
            if probe.returncode != 0:
                self.fail(f"user {user.pw_name} cannot read {dist}; set {self.p.env}_HOME to a folder "
                          f"every user can reach, such as /var/tmp/tq-{self.p.name}")
        return conf

    def start(self, fresh: bool) -> int:
        if self.read_pid() is None:
            self.pid_file.unlink(missing_ok=True)  # stale: the node died without cleaning up
            for port, var in ((self.port, "PORT"), (self.transport_port, "TRANSPORT_PORT")):
                if self.listening(port):  # e.g. another node's transport port (its HTTP port + 100)
                    self.fail(f"something else listens on 127.0.0.1:{port}; set {self.p.env}_{var}")
            self.fetch()
            user = self.run_user()
            conf = self.prepare_run_dir(user, fresh)
            self.launch(user, conf)
        else:
            self.log(f"already running (pid {self.read_pid()}); waiting for health")
        return self.wait_healthy()

    def launch(self, user: pwd.struct_passwd | None, conf: Path) -> None:
        pre = self.p.launcher_env
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            f"{pre}_JAVA_HOME": self.java_home(),
            f"{pre}_PATH_CONF": str(conf),
            f"{pre}_TMPDIR": str(self.run / "tmp"),
            f"{pre}_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}",
            "LANG": "C.UTF-8",
        }
        cmd = [str(self.dist / "bin" / self.p.name), "-d", "-p", str(self.pid_file)]
        if user is not None:
            cmd = ["runuser", "-u", user.pw_name, "--", "env", *[f"{k}={v}" for k, v in env.items()], *cmd]
        self.log(f"starting {self.version} on {self.url} (JDK {env[f'{pre}_JAVA_HOME']}, heap {self.heap})")
        out = self.run / "logs" / "launcher.out"
        with open(out, "w") as fh:
            proc = subprocess.run(cmd, cwd=self.run, env=env, stdout=fh, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "\n".join(out.read_text(errors="replace").splitlines()[-30:])
            self.fail(f"the node did not start (exit {proc.returncode}); logs in {self.run / 'logs'}:\n{tail}")

    def wait_healthy(self) -> int:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            state = self.health()
            if state and state.get("status") in ("yellow", "green"):
                self.log(f"ready: health {state['status']}, pid {self.read_pid()}")
                print(self.url)
                return 0
            if self.read_pid() is None and self.pid_file.exists():
                break
            time.sleep(1)
        self.stop()
        self.fail(f"no healthy node within {self.start_timeout:.0f}s; see {self.run / 'logs'}")
        return 1

    def stop(self) -> int:
        pid = self.read_pid()
        if pid is None:
            self.log("not running")
            self.pid_file.unlink(missing_ok=True)
            return 0
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.read_pid() is not None:
            time.sleep(0.5)
        if self.read_pid() is not None:
            self.log(f"pid {pid} ignored SIGTERM for 60s; killing")
            os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        self.pid_file.unlink(missing_ok=True)
        self.log(f"stopped (pid {pid})")
        return 0

    def status(self) -> int:
        pid = self.read_pid()
        state = self.health()
        if pid and state:
            print(f"running {self.version} at {self.url}, pid {pid}, health {state.get('status')}")
            return 0
        if pid:
            print(f"process {pid} alive but {self.url} does not answer")
            return 1
        print(f"stopped ({self.url})")
        return 3


def _world_traversable(path: Path) -> bool:
    """Every ancestor lets others through (the non-root run user must reach the files)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.exists())


def main(product: Product, doc: str, argv: list[str]) -> int:
    """``start [--fresh] | stop | status | url | fetch`` for ``product``."""
    if not argv or argv[0] in ("-h", "--help"):
        print(doc)
        return 0 if argv else 2
    node = Node(product)
    cmd, rest = argv[0], argv[1:]
    if cmd == "start":
        return node.start(fresh="--fresh" in rest)
    if cmd == "stop":
        return node.stop()
    if cmd == "status":
        return node.status()
    if cmd == "url":
        print(node.url)
        return 0
    if cmd == "fetch":
        node.fetch()
        print(node.dist)
        return 0
    print(doc, file=sys.stderr)
    return 2
