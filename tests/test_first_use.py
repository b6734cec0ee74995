"""First-use manifests: recorded during a first job, replayed by a later process's load, in the loading thread."""

import json
import threading

import pytest
import torch
import torch.nn.functional as F

from instantmesh_cli import first_use
from instantmesh_cli.chain.models import Models
from instantmesh_cli.chain.options import PipelineOptions


def _work(x: torch.Tensor, weight: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    y = F.relu(F.conv2d(x, weight, padding=1))  # a convolution, then an elementwise op (not heavy)
    return torch.mm(y.flatten(1), matrix) + 1


def _inputs(batch: int = 2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    return x, torch.randn(4, 3, 3, 3, generator=g), torch.randn(4 * 8 * 8, 5, generator=g)


def test_a_recording_keeps_each_heavy_call_once_with_its_shapes_and_strides(tmp_path):
    path = tmp_path / "m.json"
    with first_use.recording(path) as recorder:
        for _ in range(3):
            _work(*_inputs())
        _work(*_inputs(batch=1))  # another shape: another call
    calls = first_use.read_manifest(path)
    assert calls is not None and len(calls) == len(recorder.calls) == 4
    assert [c["op"] for c in calls] == ["aten::convolution.default", "aten::mm.default"] * 2
    conv = calls[0]["args"]
    x = _inputs()[0]
    assert conv[0] == {"tensor": [2, 3, 8, 8], "stride": list(x.stride()), "dtype": "float32"}  # channels-last kept
    assert conv[3:6] == [[1, 1], [1, 1], [1, 1]]  # stride, padding, dilation


def test_calls_inside_not_recorded_are_left_out_and_the_recording_goes_on_after(tmp_path):
    path = tmp_path / "m.json"
    with first_use.recording(path):
        with first_use.not_recorded():
            _work(*_inputs(batch=3))  # first-process-only work (the empty-prompt embedding)
            with first_use.not_recorded():
                _work(*_inputs(batch=4))
            _work(*_inputs(batch=5))  # still inside the outer block
        _work(*_inputs(batch=1))
    calls = first_use.read_manifest(path)
    assert [c["args"][0]["tensor"][0] for c in calls if c["op"] == "aten::convolution.default"] == [1]


def test_a_pause_in_one_thread_leaves_another_threads_recording_alone(tmp_path):
    path = tmp_path / "m.json"
    paused, go = threading.Event(), threading.Event()

    def pause():
        with first_use.not_recorded():
            paused.set()
            go.wait(10)

    t = threading.Thread(target=pause)
    t.start()
    paused.wait(10)
    with first_use.recording(path):
        _work(*_inputs(batch=2))
    go.set()
    t.join()
    assert len(first_use.read_manifest(path)) == 2


def test_under_inference_mode_the_composite_calls_are_kept(tmp_path):
    # The pipelines run under torch.inference_mode, where a dispatch mode sees conv2d, linear and
    # scaled_dot_product_attention themselves, not what they decompose into.
    from instantmesh_cli import random_weights as rw

    unet = rw.build_unet(rw.TINY, seed=3).eval()
    cfg = rw.TINY.unet
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, cfg["in_channels"], 16, 12, generator=g)
    text = torch.randn(2, 3, cfg["cross_attention_dim"], generator=g)
    path = tmp_path / "m.json"
    with first_use.recording(path), torch.inference_mode():
        unet(latents, 500, encoder_hidden_states=text)
    ops = {c["op"] for c in first_use.read_manifest(path)}
    assert {"aten::conv2d.default", "aten::linear.default", "aten::scaled_dot_product_attention.default"} <= ops
    with first_use.recording(tmp_path / "again.json") as spy, torch.inference_mode():
        done = first_use.replay(first_use.read_manifest(path), torch.device("cpu"))
    assert done.failed == 0 and len(spy.calls) == done.calls  # each replayed as the signature it was recorded with


def test_a_replay_runs_every_call_and_skips_what_does_not_apply(tmp_path):
    path = tmp_path / "m.json"
    with first_use.recording(path):
        _work(*_inputs())
    calls = first_use.read_manifest(path)
    calls.append({"op": "aten::no_such_op.default", "args": [], "kwargs": {}})
    with first_use.recording(tmp_path / "seen.json") as spy:  # the replay's own calls, as a recorder sees them
        done = first_use.replay(calls, torch.device("cpu"))
    assert (done.calls, done.failed) == (3, 1) and done.seconds >= 0
    replayed = [json.loads(line) for line in spy.calls]
    assert [c["op"] for c in replayed] == ["aten::convolution.default", "aten::mm.default"]
    assert replayed == calls[:2]  # the same signatures: the same plans get built


def test_nothing_is_written_when_no_heavy_call_ran(tmp_path):
    path = tmp_path / "m.json"
    with first_use.recording(path):
        torch.ones(3).add(1)
    assert not path.exists()


def test_a_body_that_raises_writes_nothing(tmp_path):
    path = tmp_path / "m.json"
    with pytest.raises(RuntimeError):
        with first_use.recording(path):
            _work(*_inputs())
            raise RuntimeError("the job broke")
    assert not path.exists()


@pytest.mark.parametrize("text", ["", "not json\n", '{"args": []}\n', "[1, 2]\n"])
def test_a_damaged_manifest_is_not_one(tmp_path, text):
    path = tmp_path / "m.json"
    path.write_text(text)
    assert first_use.read_manifest(path) is None
    assert first_use.read_manifest(tmp_path / "missing.json") is None


def test_the_manifest_is_named_by_the_models_and_versions(tmp_path):
    a = first_use.manifest_path(tmp_path, model="instant-mesh-large", dtype="torch.float16")
    assert a == first_use.manifest_path(tmp_path, dtype="torch.float16", model="instant-mesh-large")
    assert a != first_use.manifest_path(tmp_path, model="instant-mesh-base", dtype="torch.float16")
    assert a.parent == tmp_path / "first-use"


BOTH = frozenset({"multiview", "reconstruction"})  # what the generate plan's load stage loads


def _gpu_models(monkeypatch, tmp_path) -> Models:
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path))
    models = Models(PipelineOptions(device="cpu"), single_job=True)
    models.device = torch.device("cuda")  # the branch under test; nothing below touches a GPU
    return models


def test_models_record_one_first_job_per_process_and_not_on_the_cpu(monkeypatch, tmp_path):
    models = _gpu_models(monkeypatch, tmp_path)
    path = models._first_use_manifest(BOTH)
    with models.recording_first_use(frozenset()):  # a stage group without the load stage (CPU stages)
        _work(*_inputs())
    with models.recording_first_use(frozenset({"reconstruction"})):  # no multiview load to replay beside
        _work(*_inputs())
    assert not list(tmp_path.rglob("*.json"))
    with models.recording_first_use(BOTH):
        torch.ones(2).mul(2)  # a body without heavy calls (a CPU stage group) leaves the recording to the next
    assert not path.exists()
    with models.recording_first_use(BOTH):
        _work(*_inputs())
    assert first_use.read_manifest(path) is not None
    assert models._first_use_manifest(frozenset({"multiview"})) != path  # imesh multiview's jobs: their own
    path.unlink()
    with models.recording_first_use(BOTH):  # recorded once: later jobs run unobserved
        _work(*_inputs())
    assert not path.exists()
    on_cpu = Models(PipelineOptions(device="cpu"))
    assert on_cpu._first_use_manifest(BOTH) is None
    with on_cpu.recording_first_use(BOTH):
        _work(*_inputs())
    assert not list(tmp_path.rglob("*.json"))


def test_the_load_replays_in_its_own_thread_while_a_thread_builds_the_pipeline(monkeypatch, tmp_path):
    models = _gpu_models(monkeypatch, tmp_path)
    path = models._first_use_manifest(BOTH)
    with first_use.recording(path):
        _work(*_inputs())
    threads, built = {}, object()
    replay_started = threading.Event()

    def build():
        assert replay_started.wait(10)  # the two overlap
        threads["build"] = threading.get_ident()
        return built

    def fake_replay(calls, device):
        threads["replay"] = threading.get_ident()
        replay_started.set()
        assert [c["op"] for c in calls] == ["aten::convolution.default", "aten::mm.default"]
        return first_use.Replay(len(calls), 0, 0.5)

    monkeypatch.setattr(models, "_build_multiview", build)
    monkeypatch.setattr(first_use, "replay", fake_replay)
    monkeypatch.setattr(models, "_load_reconstructor_beside", lambda: object())
    from instantmesh_cli.texture import raster

    monkeypatch.setattr(raster, "preload", lambda device, notice: None)
    models.load()  # both, as the generate plan's load stage
    assert models.multiview is built
    assert threads["replay"] == threading.get_ident() != threads["build"]
    assert models.first_use_replay == first_use.Replay(2, 0, 0.5)
    with models.recording_first_use(BOTH):  # replayed: this process records nothing
        _work(*_inputs(batch=3))
    assert len(first_use.read_manifest(path)) == 2


def test_without_a_manifest_the_load_builds_in_this_thread(monkeypatch, tmp_path):
    models = _gpu_models(monkeypatch, tmp_path)
    threads = []
    monkeypatch.setattr(models, "_build_multiview", lambda: threads.append(threading.get_ident()) or object())
    models.load(multiview=True, reconstruction=False)
    assert threads == [threading.get_ident()] and models.first_use_replay is None


@pytest.mark.parametrize("single_job", [True, False])
def test_the_reconstruction_model_loads_in_a_thread_once_the_views_are_under_way(monkeypatch, tmp_path, single_job):
    """One job: started by the multiview stage's first step (start_background_loads), not by the load, whose
    condition encoding comes next; a warmed-up process (several jobs): at once."""
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path))
    models = Models(PipelineOptions(device="cpu"), single_job=single_job)
    models.device = torch.device("cuda")
    loaded, started = object(), threading.Event()
    threads = []

    def load_beside():
        threads.append(threading.get_ident())
        started.set()
        return loaded

    monkeypatch.setattr(models, "_build_multiview", lambda: object())
    monkeypatch.setattr(models, "_warmed", lambda pipe: pipe)
    monkeypatch.setattr(models, "_load_reconstructor_beside", load_beside)
    from instantmesh_cli.texture import raster

    monkeypatch.setattr(raster, "preload", lambda device, notice: None)
    models.load()
    assert started.wait(0.2) is (not single_job)
    models.start_background_loads()
    models.start_background_loads()  # once
    assert started.wait(10) and models.reconstructor is loaded
    assert len(threads) == 1 and threads[0] != threading.get_ident()


def test_a_deferred_reconstruction_model_that_nothing_started_loads_on_first_use(monkeypatch, tmp_path):
    models = _gpu_models(monkeypatch, tmp_path)
    loaded = object()
    monkeypatch.setattr(models, "_build_multiview", lambda: object())
    monkeypatch.setattr(models, "_load_reconstructor_beside", lambda: pytest.fail("no thread was asked for"))
    monkeypatch.setattr(models, "_load_reconstructor", lambda: loaded)
    from instantmesh_cli.texture import raster

    monkeypatch.setattr(raster, "preload", lambda device, notice: None)
    models.load()
    assert models.reconstructor is loaded  # e.g. a plan whose views came from files
    models.start_background_loads()  # too late to matter: nothing more happens


def test_a_warmed_up_process_records_its_warm_up_first_then_its_first_job(monkeypatch, tmp_path):
    """A server's or a batch's load warms up (its views then replay CUDA graphs, which no recorder sees):
    the manifest its first job writes starts with the warm-up's calls, so a later one-photo process
    replays the views' calls too."""
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path))
    models = Models(PipelineOptions(device="cpu"), single_job=False)
    models.device = torch.device("cuda")

    class Pipe:
        def warm_up(self, **settings):
            _work(*_inputs(batch=3))  # the views' passes, eager before their capture
            return 0.25

    pipe = Pipe()
    assert models._warmed(pipe) is pipe and models.warm_up_s == 0.25
    path = models._first_use_manifest(BOTH)
    with models.recording_first_use(BOTH):
        _work(*_inputs(batch=1))  # the first job: encoders, decoder, reconstruction
    batches = [c["args"][0]["tensor"][0] for c in first_use.read_manifest(path) if c["op"] == "aten::convolution.default"]
    assert batches == [3, 1]


def test_a_job_that_runs_nothing_heavy_after_a_warm_up_writes_no_manifest(tmp_path):
    path = tmp_path / "m.json"
    with first_use.noting() as warm_up:
        _work(*_inputs(batch=3))
    with first_use.recording(path, known=warm_up.calls) as recorder:
        torch.ones(2).mul(2)
    assert recorder.known == 2 and not path.exists()  # the next job records, with the warm-up's calls again
