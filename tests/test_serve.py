"""`imesh serve` for real: a server process with two spawned CPU workers (standing in for two GPUs)
on a real unix socket and a loopback TCP port, driven over HTTP and through `imesh generate`.

Every process (the server's workers, `imesh generate` here) reads the same tiny weights
folder (what `imesh selftest --save-weights` writes) offline, so outputs are compared byte
for byte with in-process runs of the same jobs.

Cheapest settings for the many-jobs test (steps 1, guidance 1 — no classifier-free guidance
batch —, vertex colours, no refinement, no quality renders): the diffusion's attention over
the 320² views is the floor, about 1.1 s per job per CPU core.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from instantmesh_cli.chain.job import Job, JobInput, JobOutputs, derive_seed
from instantmesh_cli.chain.models import Models
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.chain.run import run_job
from instantmesh_cli.chain.stages import PHOTO_TO_MESH
import line_reader
from test_generate import photo

TOKEN = "serve-test-token-0123456789"
CHEAP = {"steps": "1", "guidance": "1", "texture": "false", "refine-texture": "false", "quality": "false",
         "no-rembg": "true"}
WEIGHTS: dict = {}  # the tiny set's folder, once the module fixture has written it


def cheap_options(**changes) -> PipelineOptions:
    return PipelineOptions(steps=1, guidance=1.0, texture=False, refine_texture=False, quality=False,
                           remove_background=False, device="cpu", weights_dir=WEIGHTS["dir"], offline=True).replace(**changes)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny weights folder, a runtime folder for the default socket, and the environment of every process."""
    from instantmesh_cli.random_weights import write_tiny_weights

    root = tmp_path_factory.mktemp("serve-env")
    WEIGHTS["dir"] = write_tiny_weights(root / "weights").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMESH_CACHE_DIR", str(root / "cache"))
        run_dir = root / "run"
        run_dir.mkdir(mode=0o700)
        mp.setenv("XDG_RUNTIME_DIR", str(run_dir))
        repo_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=repo_root, PYTHONUNBUFFERED="1")
        yield {"root": root, "env": env, "socket": run_dir / "imesh" / "serve.sock", "weights": WEIGHTS["dir"]}


class Server:
    """A running `imesh serve` subprocess and its addresses."""

    def __init__(self, proc: subprocess.Popen, addresses: list[str], socket_path: Path):
        self.proc, self.addresses, self.socket_path = proc, addresses, socket_path
        self.err: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.err.append(line)

    @property
    def tcp(self) -> str:
        return next(a for a in self.addresses if a.startswith("http://"))

    def client(self, *, token: str | None = TOKEN, tcp: bool = False) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if tcp:
            return httpx.Client(base_url=self.tcp, headers=headers, timeout=120, trust_env=False)
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket_path)), base_url="http://imesh",
                            headers=headers, timeout=120, trust_env=False)


def start_server(env: dict, *args: str, timeout: float = 240) -> Server:
    proc = subprocess.Popen([sys.executable, "-m", "instantmesh_cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    addresses: list[str] = []
    expected = 1 + ("--host" in args and "--socket" in args)
    deadline = time.monotonic() + timeout
    while len(addresses) < expected:
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.stderr.read()}")
        addresses.append(line.strip())
    path = next((Path(a[len("unix:"):]) for a in addresses if a.startswith("unix:")), None)
    return Server(proc, addresses, path)


@pytest.fixture(scope="module")
def server(tiny):
    """Two CPU workers, the default socket (in the test's runtime folder) and a loopback port, a token."""
    srv = start_server(
        tiny["env"], "--device", "cpu", "--workers", "2", "--weights-dir", str(tiny["weights"]), "--offline",
        "--socket", str(tiny["socket"]), "--host", "127.0.0.1",
        "--port", "0", "--token", TOKEN, "--ttl", "120", "--max-upload", "2",
    )
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(30)


def submit(client: httpx.Client, path: Path, *, name: str | None = None, **fields) -> dict:
    data = {**CHEAP, **{k.replace("_", "-"): v for k, v in fields.items()}}
    if name is not None:
        data["name"] = name
    response = client.post("/v1/jobs", files={"image": (path.name, path.read_bytes(), "image/png")}, data=data)
    assert response.status_code == 202, response.text
    return response.json()


def wait_done(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    last = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.strip():
                last = json.loads(line)
    assert last is not None and last["state"] in ("done", "failed", "cancelled"), last
    return last


def reference(tmp: Path, src: Path, name: str, options: PipelineOptions | None = None, fmt: str = "glb") -> bytes:
    """The same job run in this process: the bytes the server must give."""
    options = options or cheap_options()
    out = tmp / "ref" / f"{Path(name).stem}-{src.stem}.{fmt}"
    job = Job(name=name, inputs=[JobInput(name, path=src)], seed=derive_seed(options.seed, name), options=options,
              outputs=JobOutputs(mesh=out, mesh_format=fmt))
    assert run_job(_models(options), job, PHOTO_TO_MESH).status == "ok", job.error
    return out.read_bytes()


_MODELS: dict = {}


def _models(options: PipelineOptions) -> Models:
    key = tuple(getattr(options, f) for f in ("model", "device", "dtype", "weights_dir"))
    if key not in _MODELS:
        _MODELS[key] = Models(options)
    return _MODELS[key]


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"], body
    return body["error"]


# --------------------------------------------------------------------------- tests


def test_socket_is_private_and_the_server_answers(server, tiny):
    info = server.socket_path.stat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(server.socket_path.parent.stat().st_mode) == 0o700
    with server.client() as c:
        health = c.get("/v1/health").json()
    assert health["status"] == "ok" and health["workers"] == {"ready": 2, "total": 2}
    assert health["device"] == "cpu" and health["model"] == "instant-mesh-large" and health["dtype"] == "fp32"
    with server.client(token=None) as c:
        assert "token" in one_line_error(c.get("/v1/health"), 401)
    with server.client(token="wrong-token-wrong-token", tcp=True) as c:
        one_line_error(c.get("/v1/jobs"), 401)
    with server.client(tcp=True) as c:
        assert c.get("/v1/health").status_code == 200
        spec = c.get("/openapi.json").json()  # the API documents itself (no token needed to read it)
    assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/mesh.zip", "/v1/metrics"} <= set(spec["paths"])
    documented = json.dumps(spec["paths"]["/v1/jobs"]["post"])
    assert all(f'"{name}"' in documented for name in ("image", "steps", "save-views", "save-cutout"))
    assert '"weights-dir"' not in documented  # chosen when the server starts


def test_bad_requests_get_one_line_4xx_and_the_server_keeps_serving(server, tmp_path):
    src = photo(tmp_path / "ok.png")
    (tmp_path / "text.png").write_text("not an image at all")
    with server.client() as c:
        big = os.urandom(3 * 2**20)  # over the fixture's --max-upload 2
        assert "limit of 2 MB" in one_line_error(c.post("/v1/jobs", files={"image": ("big.png", big)}), 413)
        assert "limit" in one_line_error(c.post("/v1/jobs", content=big, headers={"content-type": "image/png"}), 413)
        err = one_line_error(c.post("/v1/jobs", files={"image": ("text.png", b"not an image at all")}), 422)
        assert "text.png" in err and "not an image" in err
        assert "stepz" in one_line_error(c.post("/v1/jobs", files={"image": ("ok.png", src.read_bytes())},
                                                data={"stepz": "3"}), 422)
        assert "steps" in one_line_error(c.post("/v1/jobs?steps=0", content=src.read_bytes()), 422)
        assert "expected" in one_line_error(c.post("/v1/jobs?scheduler=fast", content=src.read_bytes()), 422)
        assert "instant-mesh-base" in one_line_error(
            c.post("/v1/jobs?model=instant-mesh-base", content=src.read_bytes()), 409)
        assert "fp16" in one_line_error(c.post("/v1/jobs?dtype=fp16", content=src.read_bytes()), 409)
        assert "imesh serve --weights-dir" in one_line_error(
            c.post("/v1/jobs?weights-dir=/etc", content=src.read_bytes()), 422)
        assert "plain file name" in one_line_error(c.post("/v1/jobs?stem=../x", content=src.read_bytes()), 422)
        one_line_error(c.post("/v1/jobs", content=b""), 422)
        one_line_error(c.post("/v1/jobs", data={"steps": "1"}), 415)
        one_line_error(c.get("/v1/jobs/0123456789abcdef"), 404)
        one_line_error(c.get("/v1/nothing-here"), 404)
        one_line_error(c.put("/v1/jobs"), 405)
        # Still serving: a real job after all of that, submitted as a raw body with query options.
        raw = c.post("/v1/jobs?" + "&".join(f"{k}={v}" for k, v in CHEAP.items()) + "&name=ok.png",
                     content=src.read_bytes(), headers={"content-type": "image/png"})
        assert raw.status_code == 202, raw.text
        assert raw.headers["location"] == f"/v1/jobs/{raw.json()['id']}"
        done = wait_done(c, raw.json()["id"])
        assert done["state"] == "done" and done["result"]["status"] == "ok"
        glb = c.get(f"/v1/jobs/{done['id']}/mesh")
        assert glb.headers["content-type"] == "model/gltf-binary" and glb.content[:4] == b"glTF"
        assert c.get(f"/v1/jobs/{done['id']}/views.png").content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get(f"/v1/jobs/{done['id']}/cutout.png").status_code == 200
        assert "preview=true" in one_line_error(c.get(f"/v1/jobs/{done['id']}/preview.png"), 404)
        bare = c.post("/v1/jobs?" + "&".join(f"{k}={v}" for k, v in CHEAP.items()) + "&save-views=false&save_cutout=0",
                      content=src.read_bytes())
        lean = wait_done(c, bare.json()["id"])
        assert [f["kind"] for f in lean["files"]] == ["mesh"]
        assert "save-views=true" in one_line_error(c.get(f"/v1/jobs/{lean['id']}/views.png"), 404)
        assert "save-cutout=true" in one_line_error(c.get(f"/v1/jobs/{lean['id']}/cutout.png"), 404)
        one_line_error(c.get(f"/v1/jobs/{done['id']}/files/..%2F..%2Fetc%2Fpasswd"), 404)
        assert c.delete(f"/v1/jobs/{done['id']}").json()["deleted"] is True
        one_line_error(c.get(f"/v1/jobs/{done['id']}/mesh"), 404)
    assert glb.content == reference(tmp_path, src, "ok.png")


@pytest.mark.slow
def test_four_clients_25_jobs_each_give_the_in_process_bytes(server, tmp_path):
    # Ten distinct jobs (photo and name: the name decides the seed), each sent ten times in all.
    sources = [(photo(tmp_path / f"src{i}.png", shift=i), f"shot{i}.png") for i in range(10)]
    results: dict[int, list] = {}
    errors: list = []

    def client(k: int) -> None:
        got = []
        try:
            with server.client(tcp=k % 2 == 1) as c:  # two over the socket, two over TCP
                ids = []
                for j in range(25):
                    src, name = sources[(7 * k + j) % 10]
                    ids.append((submit(c, src, name=name)["id"], (7 * k + j) % 10))
                for job_id, which in ids:
                    state = wait_done(c, job_id)
                    assert state["state"] == "done", state
                    got.append((which, c.get(f"/v1/jobs/{job_id}/mesh").content))
                    c.delete(f"/v1/jobs/{job_id}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        results[k] = got

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    served_seconds = time.perf_counter() - started
    assert not errors, errors
    expected = [reference(tmp_path, src, name) for src, name in sources]
    assert len(set(expected)) == 10  # a mixed-up result could not pass unnoticed
    outputs = [item for k in range(4) for item in results[k]]
    assert len(outputs) == 100
    assert all(data == expected[which] for which, data in outputs)
    with server.client() as c:
        metrics = c.get("/v1/metrics").json()
    assert metrics["totals"]["done"] >= 100 and metrics["queue_depth"] == 0
    assert metrics["stage_seconds"]["multiview"]["count"] >= 100 and metrics["stage_seconds"]["multiview"]["mean"] > 0
    assert all(w["memory"] is None for w in metrics["workers"])  # CPU workers: no GPU numbers, none made up
    print(f"\n100 jobs through the server: {served_seconds:.1f} s; stage means: "
          + ", ".join(f"{k} {v['mean']:.2f}" for k, v in metrics["stage_seconds"].items()))


def test_a_worker_killed_mid_job_is_replaced_and_nothing_is_lost(server, tmp_path):
    sources = [(photo(tmp_path / f"k{i}.png", shift=2 * i), f"k{i}.png") for i in range(4)]
    with server.client() as c:
        ids = [submit(c, src, name=name)["id"] for src, name in sources]
        deadline = time.monotonic() + 120
        while c.get(f"/v1/jobs/{ids[0]}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = c.get("/v1/metrics").json()["workers"]
        victim = next(w for w in before if w["in_flight"])
        os.kill(victim["pid"], signal.SIGKILL)
        states = [wait_done(c, job_id) for job_id in ids]
        assert [s["state"] for s in states] == ["done"] * 4, states
        meshes = [c.get(f"/v1/jobs/{job_id}/mesh").content for job_id in ids]
        after = c.get("/v1/metrics").json()["workers"]
        for job_id in ids:
            c.delete(f"/v1/jobs/{job_id}")
    assert meshes == [reference(tmp_path, src, name) for src, name in sources]
    replaced = next(w for w in after if w["device"] == victim["device"] and w["pid"] != victim["pid"])
    assert replaced["restarts"] >= 1 and replaced["alive"]


def test_generate_uses_the_running_server_with_the_local_bytes(server, tiny, tmp_path, monkeypatch, capsysbinary):
    from instantmesh_cli.cli import run

    monkeypatch.setenv("IMESH_TOKEN", TOKEN)  # the client reads the token from the environment only
    src = photo(tmp_path / "mug.png", shift=3)
    args = ["--steps", "1", "--device", "cpu", "--no-quality", "--texture-size", "64", "--refine-steps", "1",
            "--weights-dir", str(tiny["weights"]), "--offline", "--json", "--save-views", "--save-cutout"]
    # Found by itself on the default socket (the test's XDG_RUNTIME_DIR), as an OBJ with its side files.
    assert run(["generate", str(src), "-o", str(tmp_path / "s" / "mug.obj"), *args]) == 0
    served = json.loads(capsysbinary.readouterr().out)
    assert run(["generate", str(src), "-o", str(tmp_path / "l" / "mug.obj"), "--no-server", *args]) == 0
    local = json.loads(capsysbinary.readouterr().out)
    assert served["engine"] == "server" and local["engine"] == "local"
    names = ["mug.obj", "mug_texture.png", "mug.mtl", "mug_views.png", "mug_cutout.png"]
    assert [Path(f).name for f in served["files"]] == [Path(f).name for f in local["files"]] == names
    for name in names:
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "l" / name).read_bytes(), name
    same = ("status", "seed", "vertices", "faces", "psnr_before", "psnr_after", "error", "warnings")
    assert {k: served[k] for k in same} == {k: local[k] for k in same}
    assert served["output"] == str(tmp_path / "s" / "mug.obj") and set(served["seconds"]) >= {"multiview", "export"}
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]  # no temporary file left
    # --server URL over TCP, the GLB to stdout.
    assert run(["generate", str(src), "-o", "-", "--server", server.tcp, "--quiet", *args[:12]]) == 0
    glb = capsysbinary.readouterr().out
    assert run(["generate", str(src), "-o", "-", "--no-server", "--quiet", *args[:12]]) == 0
    assert glb[:4] == b"glTF" and glb == capsysbinary.readouterr().out
    # A broken input fails with the words a local run uses; a missing one too.
    (tmp_path / "bad.png").write_text("nope")
    assert run(["generate", str(tmp_path / "bad.png"), str(tmp_path / "gone.png"), "-o", f"{tmp_path}/o/", *args]) == 1
    records = [json.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed"] and {r["engine"] for r in records} == {"server"}
    assert str(tmp_path / "bad.png") in records[0]["error"] and "not an image" in records[0]["error"]
    assert str(tmp_path / "gone.png") in records[1]["error"]
    # An unreachable --server is one line, exit 1; a server with other models is used only when asked to be.
    assert run(["generate", str(src), "-o", str(tmp_path / "x.glb"), "--server", "unix:/nonexistent.sock", *args]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert "cannot reach the imesh server at unix:/nonexistent.sock" in err and "Traceback" not in err
    assert run(["generate", str(src), "-o", str(tmp_path / "x.glb"), "--server", server.tcp, "--model",
                "instant-mesh-base", *args]) == 2
    assert "loaded instant-mesh-large" in capsysbinary.readouterr().err.decode()


def test_the_client_process_imports_none_of_the_models_libraries(server, tiny, tmp_path):
    """A call through the server is the client's start-up plus the job: it imports none of what the job needs."""
    src = photo(tmp_path / "mug.png", shift=5)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "instantmesh_cli", "generate", str(src), "-o", str(tmp_path / "m.glb"),
         "--json", "--quiet", "--server", f"unix:{server.socket_path}", "--steps", "1", "--guidance", "1",
         "--no-texture", "--no-refine-texture", "--no-quality", "--device", "cpu", "--weights-dir", str(tiny["weights"]),
         "--offline"],
        env=dict(tiny["env"], IMESH_TOKEN=TOKEN), capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["engine"] == "server", done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "instantmesh_cli.serve.client" in imported  # the importtime lines were read
    roots = {name.split(".")[0] for name in imported}
    assert not {"torch", "numpy", "PIL", "diffusers", "trimesh", "pydantic"} & roots
    assert "importlib.metadata" not in imported  # metadata_cache patches it only once something imports it


def test_cancel_and_a_vanished_client_do_not_wedge_the_queue(server, tmp_path):
    src = photo(tmp_path / "c.png", shift=5)
    with server.client() as c:
        # Two workers take two jobs each (one running, one being prepared); the fifth waits.
        jobs = [submit(c, src, name=f"c{i}.png") for i in range(5)]
        queued = jobs[-1]
        assert c.get(f"/v1/jobs/{queued['id']}").json()["position"] is not None
        gone = c.delete(f"/v1/jobs/{queued['id']}").json()
        assert gone["state"] == "cancelled" and gone["note"] is None  # dropped before any worker saw it
        one_line_error(c.get(f"/v1/jobs/{queued['id']}"), 404)
        first = jobs[0]
    # A client that starts following a job, then disappears without a word.
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(server.socket_path))
    raw.sendall(f"GET /v1/jobs/{first['id']}/events HTTP/1.1\r\nHost: imesh\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert raw.recv(100).startswith(b"HTTP/1.1 200")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset, not a close
    raw.close()
    # And one that goes away halfway through an upload.
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(str(server.socket_path))
    half.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: imesh\r\nAuthorization: Bearer {TOKEN}\r\n"
                 "Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n".encode() + src.read_bytes()[:500])
    half.close()
    with server.client() as c:
        assert [wait_done(c, j["id"])["state"] for j in jobs[:-1]] == ["done"] * 4
        later = submit(c, src, name="after.png")
        assert wait_done(c, later["id"])["state"] == "done"
        metrics = c.get("/v1/metrics").json()
        assert metrics["totals"]["cancelled"] >= 1 and metrics["queue_depth"] == 0 and metrics["running"] == 0
        for j in jobs[:-1] + [later]:
            c.delete(f"/v1/jobs/{j['id']}")


# This test flaked in full-suite runs for two reasons, both found and fixed: a Ctrl-C that landed
# inside a job's report (summary entry taken, JSON line not yet written: BatchReport.done now holds
# signals), and this test's own text pipe, whose readline() read the next records ahead where
# communicate() never saw them (line_reader.py).
def test_ctrl_c_in_generate_cancels_its_jobs_on_the_server(server, tiny, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(8):
        photo(folder / f"i{i}.png", shift=i)
    env = dict(tiny["env"], IMESH_TOKEN=TOKEN)
    proc = line_reader.start(
        [sys.executable, "-m", "instantmesh_cli", "generate", str(folder), "-o", f"{tmp_path}/out/", "--json",
         "--server", f"unix:{server.socket_path}", "--steps", "1", "--guidance", "1", "--no-texture",
         "--no-refine-texture", "--no-quality", "--device", "cpu", "--weights-dir", str(tiny["weights"]), "--offline"],
        env=env,
    )
    first = line_reader.readline(proc)
    assert first and json.loads(first)["engine"] == "server", line_reader.stderr_now(proc)
    proc.send_signal(signal.SIGINT)
    rest, err = line_reader.finish(proc, timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    records = [json.loads(line) for line in (first + rest).splitlines()]
    assert 1 <= len(records) < 8 and all(r["status"] == "ok" for r in records)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(Path(r["output"]).name for r in records), err
    with server.client() as c:
        deadline = time.monotonic() + 120
        def left():
            return [j for j in c.get("/v1/jobs").json() if j["name"].startswith("i")]

        while left() or c.get("/v1/metrics").json()["running"]:
            assert time.monotonic() < deadline, (left(), c.get("/v1/metrics").json(), err, server.err[-20:])
            time.sleep(0.2)  # none of its jobs is kept, and none still runs for nobody
        assert c.get("/v1/metrics").json()["totals"]["cancelled"] >= 1


def test_default_socket_folder_is_private(tmp_path, monkeypatch):
    import tempfile

    from instantmesh_cli.errors import ImeshError
    from instantmesh_cli.serve.address import default_socket, parse_server

    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = default_socket(create=True)
    assert path == tmp_path / f"imesh-{os.getuid()}" / "serve.sock"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.parent.chmod(0o755)  # someone opened it up: refused, with the fix in the message
    with pytest.raises(ImeshError, match="chmod 700"):
        default_socket(create=True)
    assert parse_server("unix:/run/x.sock").path == Path("/run/x.sock")
    assert parse_server("http://[::1]:8411").url == "http://[::1]:8411"
    with pytest.raises(Exception, match="TLS"):
        parse_server("https://gpu-box:8411")


def test_results_expire_after_the_ttl(tmp_path):
    from instantmesh_cli.serve.jobs import JobTable

    class Pool:
        def submit(self, job):
            from concurrent.futures import Future

            future = Future()
            job.status, job.files = "ok", []
            future.set_result(job)
            return future

    options = PipelineOptions(device="cpu")
    table = JobTable(Pool(), options, tmp_path, ttl=5)
    job = table.submit(b"png", "a.png", "a", options, "glb")
    assert job.state == "done" and job.folder.is_dir()
    assert table.expire(now=job.finished + 4) == 0
    assert table.expire(now=job.finished + 6) == 1 and not job.folder.exists()
    with pytest.raises(Exception, match="kept 5 s"):
        table.get(job.id)


def test_a_file_deleted_before_it_is_read_is_a_404_not_a_server_error(tmp_path):
    """A DELETE (or the TTL) between finding a job's file and reading it: one line and 404, no traceback."""
    import asyncio

    from instantmesh_cli.serve.app import attachment, read_while_kept
    from instantmesh_cli.serve.jobs import JobError

    kept = tmp_path / "m.glb"
    kept.write_bytes(b"glTF")
    assert asyncio.run(read_while_kept("j1", kept.read_bytes)) == b"glTF"
    kept.unlink()
    with pytest.raises(JobError) as caught:
        asyncio.run(read_while_kept("j1", kept.read_bytes))
    assert caught.value.status == 404 and "job j1 was deleted" in str(caught.value)
    assert attachment("duck.glb") == 'attachment; filename="duck.glb"'
    assert attachment('é "x".glb') == "attachment; filename*=utf-8''%C3%A9%20%22x%22.glb"


def test_api_fields_are_generates_flags_with_its_defaults(capsys):
    from instantmesh_cli.cli import run
    from instantmesh_cli.cli.options import pipeline_options
    from instantmesh_cli.serve.fields import fields, fields_from_params, job_options

    assert run(["generate", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"--{name}" in text for name in fields())
    server = PipelineOptions(device="cpu")
    defaults = {f.param: f.default for f in fields().values()}
    plain = job_options(fields_from_params(defaults), server, device_type="cpu")
    assert plain.options == pipeline_options(device="cpu") and plain.fmt == "glb"
    # generate's client keeps on the server only what its own flags write.
    assert (plain.save_views, plain.save_cutout) == (False, False)
    sent = fields_from_params({**defaults, "steps": 30, "texture": False, "uv": "xatlas", "min_psnr": 20.5,
                               "save_views": True})
    job = job_options(sent, server, device_type="cpu")
    assert (job.options.steps, job.options.texture, job.options.uv_method, job.options.min_psnr) == (30, False, "xatlas", 20.5)
    assert (job.save_views, job.save_cutout) == (True, False)
    # An API client that says nothing gets both kept (the web page shows them).
    bare = job_options({"seed": "3"}, server, device_type="cpu")
    assert (bare.save_views, bare.save_cutout, bare.options.seed) == (True, True, 3)


def test_tcp_beyond_loopback_needs_a_token(tiny):
    proc = subprocess.run([sys.executable, "-m", "instantmesh_cli", "serve", "--host", "0.0.0.0", "--device", "cpu"],
                          capture_output=True, text=True, env=tiny["env"], timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--token" in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_drains_running_jobs_then_exits_0(server, tmp_path):
    src = photo(tmp_path / "d.png", shift=1)
    with server.client() as c:
        jobs = [submit(c, src, name=f"d{i}.png") for i in range(3)]
        deadline = time.monotonic() + 120
        while c.get(f"/v1/jobs/{jobs[0]['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while c.get("/v1/health").status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "draining" in one_line_error(c.post("/v1/jobs", content=src.read_bytes()), 503)
        finished = [wait_done(c, j["id"]) for j in jobs]
        assert [f["state"] for f in finished] == ["done"] * 3
        meshes = [c.get(f"/v1/jobs/{j['id']}/mesh").content for j in jobs]
        for j in jobs:
            c.delete(f"/v1/jobs/{j['id']}")
    assert server.proc.wait(60) == 0, "".join(server.err)
    assert all(m[:4] == b"glTF" for m in meshes)
    assert not server.socket_path.exists()
    log = "".join(server.err)
    assert "draining" in log and "Traceback" not in log, log
