"""A real two-node Ray cluster on this machine for the tests, and its complete removal.

Both nodes are ``ray start`` processes with their own temporary folder, one CPU and
their own custom resource (``imesh_head`` / ``imesh_worker``), so a test can tell the
nodes apart by resource. Everything listens on 127.0.0.1.

Teardown ends exactly the processes of this cluster: ``ray stop`` would stop every Ray
process of the user on the machine (other clusters included), so the cluster's
processes are found by their temporary folder (in their command lines) and their
children, terminated, then killed if they linger.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psutil

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
OBJECT_STORE_BYTES = 150 * 2**20  # far below Ray's default 30 % of memory: the rows are small


@dataclass
class Cluster:
    address: str
    temp_dirs: list[Path]
    nodes: dict[str, str] = field(default_factory=dict)  # node id -> "head" / "worker"
    env: dict[str, str] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: those naming one of its folders, and their descendants."""
        marks = [str(d) for d in self.temp_dirs]
        roots = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(m in arg for arg in proc.info["cmdline"] or () for m in marks):
                    roots.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found = {p.pid: p for p in roots}
        for root in roots:
            try:
                for child in root.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue
        return [p for p in found.values() if _alive(p)]

    def actor_processes(self, class_name: str) -> list[psutil.Process]:
        """The worker processes whose title names ``class_name`` (Ray titles actors ``ray::<class>...``)."""
        out = []
        for proc in self.processes():
            try:
                title = " ".join(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
            if title.startswith("ray::") and class_name in title:
                out.append(proc)
        return out


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ray(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run([*RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


@contextlib.contextmanager
def two_node_cluster(env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Head (1 CPU, resource imesh_head) + worker (1 CPU, resource imesh_worker); removed afterwards."""
    env = dict(os.environ if env is None else env)
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Token authentication turns itself on once a token file exists in ~/.ray (a local ray.init
    # writes one); the test cluster is reached from this machine only and must not depend on it.
    env["RAY_AUTH_MODE"] = "disabled"
    # Short folder names: Ray's unix sockets live below them and socket paths are limited to ~107 bytes.
    head_dir = Path(tempfile.mkdtemp(prefix="imr-h-", dir="/tmp"))
    worker_dir = Path(tempfile.mkdtemp(prefix="imr-w-", dir="/tmp"))
    cluster = Cluster(address="", temp_dirs=[head_dir, worker_dir], env=env)
    common = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(OBJECT_STORE_BYTES),
              "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        port = _free_port()
        _ray(["start", "--head", "--port", str(port), "--include-dashboard", "false",
              "--resources", '{"imesh_head": 1}', "--temp-dir", str(head_dir), *common], env)
        cluster.address = f"127.0.0.1:{port}"
        _ray(["start", "--address", cluster.address, "--resources", '{"imesh_worker": 1}',
              "--temp-dir", str(worker_dir), *common], env)
        cluster.nodes = _wait_for_nodes(cluster.address, env)
        yield cluster
    finally:
        stop(cluster)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_nodes(address: str, env: dict[str, str], timeout: float = 60) -> dict[str, str]:
    """Node id -> role, once both nodes have registered (asked from a short-lived driver process)."""
    script = (
        "import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
        "print(json.dumps({n['NodeID']: ('head' if 'imesh_head' in n['Resources'] else 'worker') "
        "for n in ray.nodes() if n['Alive']}))" % address
    )
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            import json

            nodes = json.loads(done.stdout.strip().splitlines()[-1])
            if sorted(nodes.values()) == ["head", "worker"]:
                return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"the two Ray nodes did not both register:\n{done.stdout}\n{done.stderr}")
        time.sleep(1)


def stop(cluster: Cluster) -> None:
    """End every process of the cluster (by pid) and remove its folders; raises if one survives."""
    procs = cluster.processes()
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    left = cluster.processes()
    import shutil

    for folder in cluster.temp_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    if left:
        raise RuntimeError(f"Ray processes survived the teardown: {[p.pid for p in left]}")
