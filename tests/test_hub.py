"""Weights: registry, resolution order, verified downloads through ``hf_hub_download``,
offline errors, pickle -> safetensors conversion, and ``imesh download`` — against the
local fake Hub (tests/fakehub.py, real HTTP, the real huggingface_hub client)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from instantmesh_cli import hub, settings
from instantmesh_cli.cli import run
from instantmesh_cli.errors import WeightsError
from instantmesh_cli.settings import HubFile
from matting_mirror import matting_mirror  # noqa: F401 - fixture: `imesh download` also fetches the rembg model

MB = 1 << 20


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """An empty HF cache and imesh cache for this test only."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "imesh"))
    return tmp_path / "hf-hub"


def new_repo(fake_hub, files: dict[str, bytes]) -> tuple[str, str]:
    repo_id = f"test/{uuid.uuid4().hex[:10]}"
    return repo_id, fake_hub.new_commit(repo_id, files)


def blob_bytes(n: int, seed: int = 0) -> bytes:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8).numpy().tobytes()


# ------------------------------------------------------------------------ registry
def test_registry_lists_every_file_each_variant_needs():
    for name, variant in settings.VARIANTS.items():
        files = settings.model_files(name)
        keys = {(f.repo_id, f.filename) for f in files}
        assert (settings.INSTANTMESH_REPO, variant.checkpoint) in keys
        assert (settings.INSTANTMESH_REPO, "diffusion_pytorch_model.bin") in keys
        assert (settings.DINO_REPO, "preprocessor_config.json") in keys
        for needed in ("model_index.json", "unet/config.json", "vae/diffusion_pytorch_model.safetensors",
                       "text_encoder/model.safetensors", "tokenizer/vocab.json",
                       "vision_encoder/model.safetensors", "feature_extractor_clip/preprocessor_config.json",
                       "feature_extractor_vae/preprocessor_config.json", "scheduler/scheduler_config.json"):
            assert (settings.ZERO123PLUS_REPO, needed) in keys
        # InstantMesh's UNet replaces every tensor of the sudo-ai one: not fetched by default.
        assert (settings.ZERO123PLUS_REPO, settings.ZERO123PLUS_UNET_WEIGHTS) not in keys
        # Other variants' checkpoints are not part of this one.
        others = {v.checkpoint for v in settings.VARIANTS.values()} - {variant.checkpoint}
        assert not any(f.filename in others for f in files)
        assert len(keys) == len(files)
    assert len(settings.all_files()) == len(settings.model_files("instant-mesh-large")) + 3


def test_pinned_revisions_are_commits_and_overridable(monkeypatch):
    for repo in (settings.INSTANTMESH_REPO, settings.ZERO123PLUS_REPO, settings.DINO_REPO):
        rev = settings.revision_for(repo)
        assert len(rev) == 40 and all(c in "0123456789abcdef" for c in rev)
    base = settings.hub_file(settings.INSTANTMESH_REPO, "instant_mesh_base.ckpt")
    assert base.size == 1_253_574_354 and base.sha256 and len(base.sha256) == 64
    monkeypatch.setenv(settings.revision_env_var(settings.INSTANTMESH_REPO), "0" * 40)
    assert settings.revision_env_var(settings.INSTANTMESH_REPO) == "IMESH_REVISION_TENCENTARC_INSTANTMESH"
    moved = settings.hub_file(settings.INSTANTMESH_REPO, "instant_mesh_base.ckpt")
    # Facts belong to the pinned commit; another revision must not be checked against them.
    assert moved.revision == "0" * 40 and moved.size is None and moved.sha256 is None


# ------------------------------------------------------------ download and cache
def test_first_download_then_cache_hit_without_network(fake_hub, fresh_cache, monkeypatch):
    data = blob_bytes(300_000)
    repo, sha = new_repo(fake_hub, {"weights.safetensors": data, "sub/config.json": b'{"a": 1}'})
    f, cfg = HubFile(repo, "weights.safetensors", sha), HubFile(repo, "sub/config.json", sha)
    first = hub.ensure(f)
    assert first.status == "downloaded" and first.path.read_bytes() == data
    assert hub.ensure(cfg).path.read_bytes() == b'{"a": 1}'
    # The standard cache layout: huggingface_hub itself finds the files.
    from huggingface_hub import try_to_load_from_cache

    assert Path(try_to_load_from_cache(repo, "sub/config.json", revision=sha)).read_bytes() == b'{"a": 1}'
    fake_hub.clear_log()
    with fake_hub.down():  # connection refused
        again = hub.ensure(f)
        assert hub.fetch(cfg).read_bytes() == b'{"a": 1}'
    assert again.status == "ok" and again.source == "cache" and again.path.read_bytes() == data
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.fetch(f).read_bytes() == data
    assert fake_hub.log == []


def test_pinned_revision_is_the_one_served(fake_hub, fresh_cache):
    repo = f"test/{uuid.uuid4().hex[:10]}"
    old = fake_hub.new_commit(repo, {"model.bin": b"old weights"})
    fake_hub.add_file(repo, "model.bin", b"new weights on main")  # branch main moves on
    main = fake_hub.head(repo, "main")
    assert main != old
    fake_hub.clear_log()
    path = hub.fetch(HubFile(repo, "model.bin", old))
    assert path.read_bytes() == b"old weights"
    assert all(f"/resolve/{old}/" in r.path for r in fake_hub.log)
    assert old in str(path)
    assert hub.fetch(HubFile(repo, "model.bin", main)).read_bytes() == b"new weights on main"
    # A branch name works too and is recorded as a ref to its commit.
    assert hub.fetch(HubFile(repo, "model.bin", "main")).read_bytes() == b"new weights on main"


def test_resume_after_the_connection_is_cut_mid_file(fake_hub, fresh_cache):
    # huggingface_hub writes in 10 MiB chunks and resumes from the last whole one: a
    # file larger than that, cut after the first chunk, shows a real Range resume.
    data = blob_bytes(12 * MB + 12345, seed=1)
    repo, sha = new_repo(fake_hub, {"big.ckpt": data})
    fake_hub.cut_next(repo, "big.ckpt", after_bytes=11 * MB)
    fake_hub.clear_log()
    calls: list[tuple[int, int | None]] = []
    path = hub.fetch(HubFile(repo, "big.ckpt", sha), progress=lambda done, total: calls.append((done, total)))
    assert path.read_bytes() == data
    gets = fake_hub.file_downloads("big.ckpt")
    assert len(gets) == 2 and gets[0].range is None
    # The second request continues after the bytes already on disk.
    start = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 11 * MB and gets[1].status == 206
    # imesh's progress(done, total) is fed from huggingface_hub's tqdm_class.
    assert calls[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_download_that_keeps_breaking_off_is_one_line_and_leaves_nothing(fake_hub, fresh_cache):
    data = blob_bytes(3 * MB, seed=2)
    repo, sha = new_repo(fake_hub, {"big.bin": data})
    f = HubFile(repo, "big.bin", sha)
    # More cuts than huggingface_hub's retries (5 without progress, 1 s apart).
    fake_hub.cut_next(repo, "big.bin", after_bytes=int(1.5 * MB), times=7)
    with pytest.raises(hub.HubUnreachableError, match="run the command again") as err:
        hub.fetch(f)
    assert "\n" not in str(err.value) and "big.bin" in str(err.value)
    assert not list(fresh_cache.rglob("*.incomplete"))
    assert hub.locate(f) is None
    fake_hub.reset_faults()
    fake_hub.clear_log()
    assert hub.fetch(f).read_bytes() == data
    assert [g.range for g in fake_hub.file_downloads("big.bin")] == [None]


def _standin_registry(fake_hub, monkeypatch, extra: dict[str, bytes] | None = None) -> dict[tuple[str, str], bytes]:
    """Serve distinct tiny stand-ins for every registry file at fresh commits."""
    contents: dict[tuple[str, str], bytes] = {}
    for i, f in enumerate(settings.all_files() + [settings.hub_file(settings.ZERO123PLUS_REPO,
                                                                     settings.ZERO123PLUS_UNET_WEIGHTS)]):
        contents[(f.repo_id, f.filename)] = (b'{"i": %d}' % i if f.filename.endswith((".json", ".txt"))
                                             else blob_bytes(1000 + i, seed=i))
    for repo in settings.PINNED_REVISIONS:
        files = {path: data for (r, path), data in contents.items() if r == repo}
        files.update((extra or {}).get(repo, {}))
        sha = fake_hub.new_commit(repo, files)
        monkeypatch.setenv(settings.revision_env_var(repo), sha)
    return contents


def test_a_killed_download_command_leaves_no_half_file_and_the_next_run_completes(
        fake_hub, fresh_cache, monkeypatch, tmp_path, matting_mirror):  # noqa: F811
    contents = _standin_registry(fake_hub, monkeypatch)
    big = blob_bytes(4 * MB, seed=9)
    ckpt = settings.get_variant("instant-mesh-base").checkpoint
    sha = fake_hub.new_commit(settings.INSTANTMESH_REPO, {
        path: data for (r, path), data in contents.items() if r == settings.INSTANTMESH_REPO} | {ckpt: big})
    monkeypatch.setenv(settings.revision_env_var(settings.INSTANTMESH_REPO), sha)
    fake_hub.throttle(settings.INSTANTMESH_REPO, ckpt, 1 * MB)
    fake_hub.clear_log()
    out = tmp_path / "export"
    cmd = [sys.executable, "-m", "instantmesh_cli", "download", "--model", "instant-mesh-base", "--to", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not fake_hub.file_downloads(ckpt):
            assert proc.poll() is None and time.monotonic() < deadline, "download did not start"
            time.sleep(0.05)
        time.sleep(0.5)  # mid-file: the throttled body takes ~4 s
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    dest = out / settings.INSTANTMESH_REPO / ckpt
    assert not dest.exists()  # the partial bytes stay in a temporary file, never at the final name
    fake_hub.throttle(settings.INSTANTMESH_REPO, ckpt, None)
    fake_hub.clear_log()
    assert run(["download", "--model", "instant-mesh-base", "--to", str(out)]) == 0
    assert dest.read_bytes() == big
    # huggingface_hub does not resume across runs: the file is fetched again from the start.
    assert [g.range for g in fake_hub.file_downloads(ckpt)] == [None]


def test_corrupted_cache_file_is_detected_removed_and_fetched_again(fake_hub, fresh_cache, monkeypatch):
    data = blob_bytes(200_000, seed=3)
    repo, sha = new_repo(fake_hub, {"w.safetensors": data, "config.json": b'{"k": 2}'})
    for name, good in (("w.safetensors", data), ("config.json", b'{"k": 2}')):
        f = HubFile(repo, name, sha)
        path = hub.fetch(f)
        blob = path.resolve()
        broken = bytearray(good)
        broken[len(broken) // 2] ^= 0xFF  # same size, one byte flipped
        blob.write_bytes(bytes(broken))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(hub.CorruptWeightsError, match="corrupted"):
            hub.fetch(f)
        monkeypatch.delenv("HF_HUB_OFFLINE")
        fake_hub.clear_log()
        result = hub.ensure(f)
        assert result.status == "repaired" and result.path.read_bytes() == good
        assert len(fake_hub.file_downloads(name)) == 1


def test_registry_hash_and_size_are_enforced(fake_hub, fresh_cache):
    data = blob_bytes(5000, seed=4)
    repo, sha = new_repo(fake_hub, {"m.ckpt": data})
    good = hashlib.sha256(data).hexdigest()
    assert hub.fetch(HubFile(repo, "m.ckpt", sha, size=len(data), sha256=good)).read_bytes() == data
    repo2, sha2 = new_repo(fake_hub, {"m.ckpt": data})
    with pytest.raises(hub.CorruptWeightsError, match="sha256"):
        hub.fetch(HubFile(repo2, "m.ckpt", sha2, sha256="0" * 64))
    with pytest.raises(hub.CorruptWeightsError, match="bytes"):
        hub.fetch(HubFile(repo2, "m.ckpt", sha2, size=len(data) + 1))
    assert not list(fresh_cache.rglob(f"*{good}*.incomplete"))


def test_offline_missing_file_is_one_immediate_line(fake_hub, fresh_cache, monkeypatch, capsys):
    repo, sha = new_repo(fake_hub, {"m.ckpt": b"x" * 10})
    f = HubFile(repo, "m.ckpt", sha)
    fake_hub.clear_log()
    start = time.perf_counter()
    with pytest.raises(hub.MissingWeightsError) as err:
        hub.fetch(f, offline=True)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert "\n" not in message and "m.ckpt" in message and "imesh download" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.MissingWeightsError):
        hub.fetch(f)
    assert fake_hub.log == []
    # Through the CLI: the whole report, exit 1, no traceback.
    _standin_registry(fake_hub, monkeypatch)
    start = time.perf_counter()
    assert run(["download", "--model", "instant-mesh-large"]) == 1
    assert time.perf_counter() - start < 5
    captured = capsys.readouterr()
    assert "missing" in captured.out and "Traceback" not in captured.out + captured.err


def test_unreachable_or_stalled_hub_fails_fast(fake_hub, fresh_cache, monkeypatch):
    repo, sha = new_repo(fake_hub, {"m.ckpt": b"y" * 10})
    f = HubFile(repo, "m.ckpt", sha)
    with fake_hub.down():
        start = time.perf_counter()
        with pytest.raises(hub.HubUnreachableError, match="cannot reach the model hub"):
            hub.fetch(f)
        assert time.perf_counter() - start < 2
    monkeypatch.setenv("IMESH_HUB_TIMEOUT", "1")
    with fake_hub.hanging():
        start = time.perf_counter()
        with pytest.raises(hub.HubUnreachableError):
            hub.fetch(f)
        assert time.perf_counter() - start < 4
    assert hub.fetch(f).read_bytes() == b"y" * 10


def test_hub_errors_are_clear(fake_hub, fresh_cache):
    repo, sha = new_repo(fake_hub, {"a.json": b"{}"})
    with pytest.raises(hub.MissingWeightsError, match="is not in"):
        hub.fetch(HubFile(repo, "b.json", sha))
    with pytest.raises(hub.MissingWeightsError, match="IMESH_REVISION_"):
        hub.fetch(HubFile(repo, "a.json", "f" * 40))
    with pytest.raises(hub.MissingWeightsError, match="not found"):
        hub.fetch(HubFile("test/no-such-repo", "a.json", sha))


# --------------------------------------------------------------------- weights dir
def test_weights_dir_is_used_first_and_verified(fake_hub, fresh_cache, monkeypatch, tmp_path):
    data = blob_bytes(4000, seed=5)
    repo, sha = new_repo(fake_hub, {"m.ckpt": data, "c/config.json": b"{}"})
    f = HubFile(repo, "m.ckpt", sha)
    wdir = tmp_path / "weights"
    (wdir / repo).mkdir(parents=True)
    (wdir / repo / "m.ckpt").write_bytes(b"local copy")
    fake_hub.clear_log()
    result = hub.ensure(f, weights_dir=wdir)
    assert result.source == "weights-dir" and result.path == wdir / repo / "m.ckpt"
    monkeypatch.setenv("IMESH_WEIGHTS_DIR", str(wdir))
    assert hub.fetch(f) == wdir / repo / "m.ckpt"
    assert fake_hub.log == []
    # Not in the folder: the cache / Hub are next.
    assert hub.fetch(HubFile(repo, "c/config.json", sha)).read_bytes() == b"{}"
    monkeypatch.setenv("IMESH_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="does not exist"):
        hub.fetch(f)


def test_download_to_dir_makes_a_verifiable_offline_weights_dir(fake_hub, fresh_cache, monkeypatch, tmp_path,
                                                                matting_mirror):  # noqa: F811
    contents = _standin_registry(fake_hub, monkeypatch)
    out = tmp_path / "export"
    assert run(["download", "--model", "instant-nerf-base", "--to", str(out)]) == 0
    files = settings.model_files("instant-nerf-base")
    for f in files:
        assert (out / f.repo_id / f.filename).read_bytes() == contents[(f.repo_id, f.filename)]
    manifest = json.loads((out / hub.MANIFEST_NAME).read_text())
    assert len(manifest["files"]) == len(files)
    # On the "air-gapped" side: empty cache, offline, only the folder.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.clear_log()
    for f in files:
        assert hub.fetch(f, weights_dir=out).parent.is_relative_to(out)
    folder = hub.multiview_folder(weights_dir=out)
    assert folder == out / settings.ZERO123PLUS_REPO and (folder / "model_index.json").is_file()
    assert fake_hub.log == []
    # A damaged copy in the folder is reported, not used.
    ckpt = out / settings.INSTANTMESH_REPO / "instant_nerf_base.ckpt"
    ckpt.write_bytes(b"\0" * ckpt.stat().st_size)
    with pytest.raises(hub.CorruptWeightsError, match="corrupted"):
        hub.fetch(settings.lrm_files("instant-nerf-base")[0], weights_dir=out)
    # ...and `download --to` repairs it.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert run(["download", "--model", "instant-nerf-base", "--to", str(out)]) == 0
    assert ckpt.read_bytes() == contents[(settings.INSTANTMESH_REPO, "instant_nerf_base.ckpt")]


# ------------------------------------------------------------------- imesh download
def test_download_model_fetches_exactly_the_registry_files_once(fake_hub, fresh_cache, monkeypatch, capsys,
                                                                matting_mirror):  # noqa: F811
    extra = {settings.INSTANTMESH_REPO: {"README.md": b"# not needed"},
             settings.ZERO123PLUS_REPO: {"unet/unused.bin": b"not needed"}}
    contents = _standin_registry(fake_hub, monkeypatch, extra)
    fake_hub.clear_log()
    assert run(["download", "--model", "instant-mesh-large"]) == 0
    fetched = {r.path for r in fake_hub.file_downloads()}
    expected = {f"/{f.repo_id}/resolve/{f.revision}/{f.filename}" for f in settings.model_files("instant-mesh-large")}
    assert fetched == expected
    out = capsys.readouterr().out
    assert out.count("downloaded") >= len(expected)
    for f in settings.model_files("instant-mesh-large"):
        assert hub.fetch(f, offline=True).read_bytes() == contents[(f.repo_id, f.filename)]
    # Second run: everything verified from the cache, no file body fetched.
    fake_hub.clear_log()
    assert run(["download", "--model", "instant-mesh-large", "--json"]) == 0
    assert fake_hub.file_downloads() == []
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and {r["status"] for r in report["files"]} == {"ok"}


def test_download_reports_bad_files_and_fails(fake_hub, fresh_cache, monkeypatch, capsys, matting_mirror):  # noqa: F811
    _standin_registry(fake_hub, monkeypatch)
    ckpt = settings.lrm_files("instant-mesh-large")[0]
    # A test-only registry fact that the served stand-in cannot match.
    monkeypatch.setitem(settings.FILE_FACTS, (ckpt.repo_id, ckpt.revision, ckpt.filename), (None, "ab" * 32))
    assert run(["download", "--model", "instant-mesh-large", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    status = {r["file"]: r["status"] for r in report["files"]}
    assert status[ckpt.filename] == "bad" and not report["ok"]
    assert sum(s == "downloaded" for s in status.values()) == len(status) - 1
    assert run(["download", "--model", "nope"]) == 2
    assert run(["download", "--model", "instant-mesh-base", "--all"]) == 2


def test_multiview_folder_is_loadable_with_from_pretrained(fake_hub, fresh_cache, monkeypatch):
    contents = _standin_registry(fake_hub, monkeypatch)
    processor = {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_normalize": True,
                 "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                 "resample": 3, "size": {"shortest_edge": 32}, "image_processor_type": "CLIPImageProcessor"}
    sha = fake_hub.new_commit(settings.ZERO123PLUS_REPO, {
        path: data for (r, path), data in contents.items() if r == settings.ZERO123PLUS_REPO}
        | {"feature_extractor_clip/preprocessor_config.json": json.dumps(processor).encode()})
    monkeypatch.setenv(settings.revision_env_var(settings.ZERO123PLUS_REPO), sha)
    folder = hub.multiview_folder()
    assert folder.name == sha  # the snapshot folder of the pinned commit
    for name in settings.ZERO123PLUS_FILES:
        assert (folder / name).is_file()
    assert not (folder / settings.ZERO123PLUS_UNET_WEIGHTS).exists()
    from transformers import CLIPImageProcessor

    loaded = CLIPImageProcessor.from_pretrained(folder, subfolder="feature_extractor_clip")
    assert loaded.crop_size == {"height": 32, "width": 32}


# -------------------------------------------------------------- pickles and tensors
def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_lightning_checkpoint_is_converted_once_to_safetensors(fake_hub, fresh_cache, monkeypatch):
    shared = torch.randn(4, 3)
    state = {"lrm_generator.encoder.w": torch.randn(2, 3), "lrm_generator.decoder.b": torch.arange(7),
             "lrm_generator.tied.a": shared, "lrm_generator.tied.b": shared,
             "lrm_generator.view": shared[1:3], "lrm_generator.half": torch.randn(5).half()}
    repo, sha = new_repo(fake_hub, {"m.ckpt": _pickled({"state_dict": state})})
    f = HubFile(repo, "m.ckpt", sha)
    out = hub.weights_file(f)
    assert out.suffix == ".safetensors" and out.is_relative_to(Path(os.environ["IMESH_CACHE_DIR"]))
    loaded = hub.load_state_dict(out)
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value)
    # Later calls read the converted file; the pickle is not opened again.
    mtime = out.stat().st_mtime_ns
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called again"))
    assert hub.weights_file(f) == out and out.stat().st_mtime_ns == mtime
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as sf:
        assert sf.metadata()["format"] == "pt" and sha in sf.metadata()["source"]


def test_plain_bin_state_dict_and_safetensors_pass_through(fake_hub, fresh_cache):
    from safetensors.torch import save as st_save

    state = {"conv_in.weight": torch.randn(3, 4), "conv_in.bias": torch.zeros(3)}
    repo, sha = new_repo(fake_hub, {"diffusion_pytorch_model.bin": _pickled(state),
                                    "x.safetensors": st_save(state)})
    converted = hub.load_state_dict(hub.weights_file(HubFile(repo, "diffusion_pytorch_model.bin", sha)))
    assert all(torch.equal(converted[k], v) for k, v in state.items())
    direct = hub.weights_file(HubFile(repo, "x.safetensors", sha))
    assert direct == hub.fetch(HubFile(repo, "x.safetensors", sha))


class _NotATensor:
    pass


class _Payload:
    """A pickle that would create a file if it were ever unpickled without weights_only."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickles_with_objects_are_refused_and_never_executed(fake_hub, fresh_cache, tmp_path):
    marker = tmp_path / "executed"
    repo, sha = new_repo(fake_hub, {
        "obj.ckpt": _pickled({"state_dict": {"w": torch.ones(2)}, "extra": _NotATensor()}),
        "evil.bin": _pickled({"w": _Payload(str(marker))}),
        "evil-raw.bin": pickle.dumps({"w": _Payload(str(marker))}),
        "notensor.ckpt": _pickled({"state_dict": {"w": torch.ones(2), "step": 3}}),
        "garbage.bin": b"this is not a checkpoint at all",
    })
    for name, pattern in (("obj.ckpt", "refusing"), ("evil.bin", "refusing"), ("evil-raw.bin", "."),
                          ("notensor.ckpt", "non-tensor"), ("garbage.bin", "not a readable")):
        with pytest.raises(WeightsError, match=pattern) as err:
            hub.weights_file(HubFile(repo, name, sha))
        assert "\n" not in str(err.value)
    assert not marker.exists()


def test_present_and_locate_do_not_use_the_network(fake_hub, fresh_cache):
    repo, sha = new_repo(fake_hub, {"a.bin": b"abc", "b.bin": b"def"})
    a, b = HubFile(repo, "a.bin", sha), HubFile(repo, "b.bin", sha)
    hub.fetch(a)
    fake_hub.clear_log()
    found = hub.present([a, b])
    assert found[a] is not None and found[b] is None
    assert hub.locate(a, verify=True) is not None
    assert hub.locate(HubFile(repo, "a.bin", sha, size=4)) is None  # wrong known size
    assert fake_hub.log == []


def test_the_hub_layer_uses_only_public_huggingface_hub_api():
    """Downloads go through hf_hub_download itself; nothing reaches into the client's internals."""
    import ast

    import huggingface_hub

    public_modules = {"huggingface_hub", "huggingface_hub.errors", "huggingface_hub.constants"}
    package = Path(hub.__file__).parent
    used: set[str] = set()
    for source in sorted(package.glob("*.py")) + sorted((Path(hub.__file__).parent.parent / "doctor").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("huggingface_hub"):
                assert node.module in public_modules, f"{source.name} imports from {node.module}"
                if node.module == "huggingface_hub":
                    for alias in node.names:
                        assert alias.name in huggingface_hub.__all__ or alias.name in ("errors", "constants"), \
                            f"{source.name} imports huggingface_hub.{alias.name}"
                        used.add(alias.name)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("huggingface_hub.") and a.name not in public_modules
                               for a in node.names), source.name
    assert "hf_hub_download" in used
