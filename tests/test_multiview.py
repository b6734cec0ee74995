"""Zero123++ multi-view pipeline on tiny components in the released folder layout (CPU)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from instantmesh_cli.errors import UsageError, WeightsError
from instantmesh_cli.multiview import grid as grid_mod
from instantmesh_cli.multiview.clip_vision import ClipVisionTower
from instantmesh_cli.multiview.conditioning import WHITE, ImageTransform, to_rgb
from instantmesh_cli.multiview.loading import (
    ZERO123PLUS_UNET_CONFIG,
    ZERO123PLUS_UNET_PARAMETERS,
    build_unet_from_config,
    load_components,
    load_unet_state_dict,
)
from instantmesh_cli.multiview.pipeline import DEFAULT_REFERENCE_BATCH, Zero123PlusPipeline, step_chunks
from instantmesh_cli.multiview.reference_attention import READ, WRITE, install_reference_attention
from instantmesh_cli.multiview.scaling import scale_image, scale_latents, unscale_image, unscale_latents
from instantmesh_cli.multiview.schedulers import (
    SAMPLERS,
    build_scheduler,
    get_sampler,
    noised_references,
    reference_sigmas,
)
from multiview_fixtures import (
    CLIP_MEAN,
    CLIP_STD,
    GRID_H,
    GRID_W,
    SCHEDULER_CONFIG,
    make_tiny_zero123plus,
    make_white_unet_bin,
    ramping_coefficients,
    tiny_unet,
)

STEPS = 3


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return make_tiny_zero123plus(tmp_path_factory.mktemp("zero123plus-v1.2"))


@pytest.fixture(scope="module")
def white_bin(tmp_path_factory):
    return make_white_unet_bin(tmp_path_factory.mktemp("instantmesh") / "diffusion_pytorch_model.bin")


@pytest.fixture(scope="module")
def pipe(tiny_folder, white_bin):
    return Zero123PlusPipeline.from_folder(tiny_folder, unet_weights=white_bin, dtype="fp32", device="cpu")


def _photo(seed: int, size: int = 80) -> Image.Image:
    """An RGBA object on a transparent background: a coloured disc with a random texture."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.35 * size) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = rng.randint(0, 256, (size, size, 3))
    rgba[..., 3] = np.where(inside, 255, 0)
    return Image.fromarray(rgba, "RGBA")


def _run(pipe, image, **kw):
    kw.setdefault("steps", STEPS)
    return pipe(image, height=GRID_H, width=GRID_W, **kw)


# --------------------------------------------------------------------------- grid


def test_grid_splits_row_major_with_documented_cameras():
    tiles = [Image.new("RGB", (320, 320), (40 * i, 255 - 40 * i, 7 * i)) for i in range(6)]
    grid = grid_mod.join_views(tiles)
    assert grid.size == (640, 960)
    # documented layout: view i at row i // 2, column i % 2
    for i, (x0, y0) in enumerate([(0, 0), (320, 0), (0, 320), (320, 320), (0, 640), (320, 640)]):
        assert grid.getpixel((x0 + 5, y0 + 5)) == tiles[i].getpixel((0, 0))
        assert grid_mod.VIEWS[i].box == (x0, y0, x0 + 320, y0 + 320)
    back = grid_mod.split_grid(grid)
    assert [t.size for t in back] == [(320, 320)] * 6
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(back, tiles))
    assert [grid_mod.tile_filename("views", i) for i in (0, 1, 5)] == [
        "views_az030_el+20.png",
        "views_az090_el-10.png",
        "views_az330_el-10.png",
    ]
    with pytest.raises(ValueError):
        grid_mod.split_grid(Image.new("RGB", (640, 640)))


def test_grid_camera_table_matches_reconstruction_cameras():
    cameras = pytest.importorskip("instantmesh_cli.reconstruction.cameras")
    assert tuple(float(a) for a in grid_mod.VIEW_AZIMUTHS_DEG) == tuple(cameras.AZIMUTHS_DEG)
    assert tuple(float(e) for e in grid_mod.VIEW_ELEVATIONS_DEG) == tuple(cameras.ELEVATIONS_DEG)


# --------------------------------------------------------------------------- constants


def test_scaling_constants_round_trip():
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    assert torch.allclose(unscale_latents(scale_latents(x)), x)
    assert torch.allclose(scale_latents(unscale_latents(x)), x)
    assert torch.allclose(unscale_image(scale_image(x)), x)
    # v1.2 values: (z - 0.22) * 0.75 and x * 0.5 / 0.8
    assert scale_latents(1.0) == pytest.approx(0.585)
    assert unscale_image(1.0) == pytest.approx(1.6)
    # scale_image on [-1, 1] pixels is exactly the VAE-path normalisation (p - 0.5) / 0.8
    p = torch.rand(100, dtype=torch.float64)
    assert torch.allclose(scale_image(2 * p - 1), (p - 0.5) / 0.8)
    # decoded pixel = clamp(0.8 * decoded + 0.5): unscale_image then x/2 + 0.5
    assert unscale_image(0.25) * 0.5 + 0.5 == pytest.approx(0.8 * 0.25 + 0.5)


def test_image_transforms_match_the_slow_clip_processor():
    """Our PIL resize + torch normalise equals transformers' PIL CLIPImageProcessor (real sizes)."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    rng = np.random.RandomState(3)
    image = Image.fromarray(rng.randint(0, 256, (300, 410, 3), dtype=np.uint8), "RGB")  # not square
    configs = [
        dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3,
             image_mean=CLIP_MEAN, image_std=CLIP_STD),
        dict(size={"shortest_edge": 512}, crop_size={"height": 512, "width": 512}, resample=2,
             image_mean=0.5, image_std=0.8),
    ]
    for cfg in configs:
        cfg.update(do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True,
                   rescale_factor=1 / 255, do_convert_rgb=True)
        ours = ImageTransform.from_config(cfg)(image)
        theirs = torch.as_tensor(np.asarray(CLIPImageProcessorPil(**cfg)(images=image)["pixel_values"]))
        assert ours.shape == theirs.shape == (1, 3, cfg["crop_size"]["height"], cfg["crop_size"]["width"])
        assert torch.allclose(ours, theirs, atol=1e-6), (ours - theirs).abs().max()


def test_transparency_is_filled_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgb = to_rgb(rgba, WHITE)
    assert rgb.mode == "RGB" and rgb.getpixel((1, 1)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (255, 0, 0)


# --------------------------------------------------------------------------- loading


def test_components_load_one_by_one(tiny_folder, white_bin):
    c = load_components(tiny_folder, unet_weights=white_bin, dtype=torch.float32)
    assert type(c.vae).__name__ == "AutoencoderKL"
    assert type(c.text_encoder).__name__ == "CLIPTextModel"
    assert isinstance(c.vision_encoder, ClipVisionTower)  # ours: transformers' output, tests/test_clip_vision.py
    assert type(c.unet).__name__ == "UNet2DConditionModel"
    assert "CLIPTokenizer" in type(c.tokenizer).__name__
    assert c.ramping_coefficients == pytest.approx(ramping_coefficients()) and len(c.ramping_coefficients) == 77
    assert c.scheduler_config["prediction_type"] == "v_prediction"
    # sizes come from the preprocessor configs (scaled down in the fixture)
    assert c.clip_transform.output_size == (32, 32) and c.clip_transform.resample == 3
    assert c.vae_transform.output_size == (64, 64) and c.vae_transform.mean == (0.5,) * 3
    assert c.vae_transform.std == (0.8,) * 3
    assert c.clip_transform.mean == pytest.approx(tuple(CLIP_MEAN))
    # the white-background weights replaced the folder's UNet weights
    white = torch.load(white_bin, weights_only=True)
    own = load_components(tiny_folder, dtype=torch.float32).unet.state_dict()
    loaded = c.unet.state_dict()
    assert set(loaded) == set(white)
    assert all(torch.equal(loaded[k], white[k]) for k in white)
    assert not all(torch.equal(own[k], white[k]) for k in white)
    assert all(p.device.type == "cpu" for p in c.unet.parameters())


def test_weights_read_in_the_background_onto_a_device_are_the_same(tiny_folder, white_bin, monkeypatch):
    """load_components(device=...) reads the UNet's and vision tower's files in threads (onto the GPU in use;
    here the CPU): the same tensors, and a bad file's error reaches the caller."""
    from instantmesh_cli.multiview import loading

    reads = []
    real = loading._state_dict_from_file
    monkeypatch.setattr(loading, "_state_dict_from_file", lambda path, device="cpu": reads.append(
        (path.name, str(device))) or real(path, device))
    plain = load_components(tiny_folder, unet_weights=white_bin, dtype=torch.float32)
    assert {device for _, device in reads} == {"cpu"} and len(reads) == 2
    reads.clear()
    direct = load_components(tiny_folder, unet_weights=white_bin, dtype=torch.float32, device="cpu")
    assert sorted(reads) == sorted([(white_bin.name, "cpu"), (loading.vision_weights_path(tiny_folder).name, "cpu")])
    for part in ("unet", "vision_encoder"):
        a, b = getattr(plain, part).state_dict(), getattr(direct, part).state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), part
    broken = tiny_folder.parent / "broken.bin"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.bin"):  # torch.load's own error, raised in the caller
        load_components(tiny_folder, unet_weights=broken, dtype=torch.float32, device="cpu")


def test_white_unet_state_dict_loads_strictly(tiny_folder):
    good = tiny_unet(11).state_dict()
    unet = build_unet_from_config(tiny_unet(0).config, meta=True)
    load_unet_state_dict(unet, good, assign=True)
    assert all(not p.is_meta for p in unet.parameters())

    missing = dict(good)
    missing.pop(next(iter(missing)))
    with pytest.raises(WeightsError, match="missing"):
        load_unet_state_dict(build_unet_from_config(tiny_unet(0).config), missing, assign=True)
    prefixed = {f"unet.{k}": v for k, v in good.items()}  # e.g. a wrapped / Lightning checkpoint
    with pytest.raises(WeightsError, match="unexpected"):
        load_unet_state_dict(build_unet_from_config(tiny_unet(0).config), prefixed, assign=True)
    wrong_shape = dict(good)
    key = "conv_in.weight"
    wrong_shape[key] = torch.zeros(wrong_shape[key].shape[0] + 1, *wrong_shape[key].shape[1:])
    with pytest.raises(WeightsError, match="size mismatch"):
        load_unet_state_dict(build_unet_from_config(tiny_unet(0).config), wrong_shape, assign=True)


def test_missing_component_is_a_weights_error(tmp_path, tiny_folder):
    with pytest.raises(WeightsError, match="model_index.json"):
        load_components(tmp_path)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    shutil.rmtree(broken / "vision_encoder")
    with pytest.raises(WeightsError, match="vision_encoder"):
        load_components(broken)


def test_real_unet_config_has_the_released_parameter_count():
    """The SD2-style config written in loading.py builds the released UNet: 865,910,724 parameters."""
    unet = build_unet_from_config(ZERO123PLUS_UNET_CONFIG, meta=True)
    assert sum(p.numel() for p in unet.parameters()) == ZERO123PLUS_UNET_PARAMETERS == 865_910_724
    sd = unet.state_dict()
    # use_linear_projection: proj_in is a Linear (2-D weight), as in the module dump
    assert sd["down_blocks.0.attentions.0.proj_in.weight"].shape == (320, 320)
    # cross_attention_dim 1024: attn2 keys/values project from the 1024-wide text/image embeds
    assert sd["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape == (320, 1024)
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias" not in sd  # no q/k/v bias
    assert sd["conv_in.weight"].shape == (320, 4, 3, 3) and sd["conv_out.weight"].shape == (4, 320, 3, 3)
    attn1 = [m for n, m in unet.named_modules() if n.endswith("attn1")]
    assert len(attn1) == 16
    # attention_head_dim [5, 10, 20, 20] = head counts: 64-dim heads at every level
    assert {m.inner_dim // m.heads for m in attn1} == {64}
    store = install_reference_attention(unet)
    assert len(store.layers) == 16


# --------------------------------------------------------------------------- reference attention


def test_reference_processor_equals_attention_over_concatenated_tokens():
    """Stored K/V + concatenation == attending to to_k/to_v of [own; ref] (the released mechanism)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=4, dim_head=8, bias=False).eval()
    store = install_reference_attention(torch.nn.ModuleDict({"attn1": attn}))
    own, ref = torch.randn(2, 24, 32), torch.randn(2, 10, 32)
    with torch.no_grad():
        store.mode = WRITE
        write_out = attn(ref)
        store.mode = READ
        read_out = attn(own)
        expected_write = AttnProcessor2_0()(attn, ref)
        expected_read = AttnProcessor2_0()(attn, own, encoder_hidden_states=torch.cat([own, ref], dim=1))
    assert torch.allclose(write_out, expected_write, atol=1e-6)
    assert torch.allclose(read_out, expected_read, atol=1e-6)
    assert store.kv == {}  # read pops what write stored


def _traced(pipe, **kw):
    pipe.store.trace = []
    try:
        _run(pipe, _photo(0), **kw)
        return pipe.store.trace
    finally:
        pipe.store.trace = None


def test_reference_attention_is_wired_into_every_self_attention(pipe):
    trace = _traced(pipe, steps=2, reference_batch=0)
    layers = pipe.store.layers
    assert len(layers) == 7  # tiny UNet: 2 down + 1 mid + 4 up transformer blocks (none at the top level)
    assert all(name.endswith("attn1") for name in layers)
    per_step = 2 * len(layers)
    assert len(trace) == 2 * per_step
    for step in range(2):
        chunk = trace[step * per_step : (step + 1) * per_step]
        writes = {name: own for name, mode, batch, own, ref in chunk if mode == WRITE}
        reads = {name: (own, ref) for name, mode, batch, own, ref in chunk if mode == READ}
        assert set(writes) == set(reads) == set(layers)
        assert {batch for *_, batch, _, _ in chunk} == {2}  # CFG pair in both passes
        # every read attends to the reference tokens its layer wrote in the same step
        assert all(reads[name][1] == writes[name] > 0 for name in layers)
        assert all(reads[name][0] == 6 * writes[name] for name in layers)  # 24x16 latent vs 8x8 reference tokens
    # the first attention level's token counts (the tiny UNet's level 1): 12*8 own tokens, 4*4 reference tokens
    first = {name: (own, ref) for name, mode, batch, own, ref in trace[:per_step] if mode == READ}
    assert first["down_blocks.1.attentions.0.transformer_blocks.0.attn1"] == (12 * 8, 4 * 4)


def test_batched_write_passes_are_traced_once_per_chunk(pipe):
    """reference_batch=2 over 5 steps: write passes of 2, 2 and 1 steps (batch 4, 4, 2), 5 read passes of batch 2."""
    trace = _traced(pipe, steps=5, reference_batch=2)
    layers = set(pipe.store.layers)
    n = len(layers)
    passes = [trace[k : k + n] for k in range(0, len(trace), n)]
    assert all({name for name, *_ in p} == layers for p in passes)  # every layer, once per pass
    kinds = [(p[0][1], p[0][2]) for p in passes]
    w, r = WRITE, READ
    assert kinds == [(w, 4), (r, 2), (r, 2), (w, 4), (r, 2), (r, 2), (w, 2), (r, 2)]
    for p in passes:
        assert len({(mode, batch) for _, mode, batch, _, _ in p}) == 1
    writes = {name: own for name, mode, batch, own, ref in passes[0]}
    reads = {name: (own, ref) for name, mode, batch, own, ref in passes[1]}
    assert all(reads[name] == (6 * writes[name], writes[name]) for name in layers)


# Chunked write passes vs step by step. Two kinds of claim, kept apart:
# - what the sampler feeds the UNet (noised references, timesteps, embeds, the
#   generator state each solver draw starts from, which K/V rows each read pass
#   gets) comes from the same draws through copies and elementwise + - * / only,
#   which IEEE 754 rounds the same way in any kernel: asserted bit for bit;
# - the final latents come out of UNet calls on other batch sizes, and CPU kernels
#   round a 6-row batch differently from a 2-row one depending on thread count and
#   kernel choice (found: at 3 threads GELU's SIMD body and scalar tail meet at other
#   elements; BLAS/oneDNN blocking likewise): asserted up to fp32 rounding.
# A small non-square size (8x16 latents, the reference latent is 8x8, so mixing the
# two up fails on shapes) and 3 steps: chunks 1+1+1, 2+1 (uneven, two chunks), 3.
SAMPLE_H, SAMPLE_W, SAMPLE_STEPS = 128, 64, 3
CHUNKED_RUNS = [  # (guidance, scheduler, reference_batch values; 0 = step by step)
    (4.0, "euler-a", (0, 1, 2, 3)),  # the solver draws noise: drawn ahead, replayed
    (4.0, "dpm++2m", (0, 1, 2)),  # takes a generator, draws nothing
    (4.0, "unipc", (0, 3)),  # takes no generator
    (1.0, "euler-a", (0, 1, 2)),  # CFG off: one reference row per step
]

# Allowed end-to-end gap, in eps(fp32) x max|latent|. Measured on these runs with
# 1-4 threads (max|latent| 2.0-2.3): at most 22 (5.5e-6). Real bugs, measured the same
# way, move the latents by 0.012 and more (~47,000: write-pass timesteps in the wrong
# row order), ~0.1 (a step reading another step's K/V), ~2.5 (noise draw order).
FP32_GAP_EPS = 400


def _assert_same_up_to_fp32_rounding(actual, expected, what):
    gap = (actual - expected).abs().max().item()
    allowed = FP32_GAP_EPS * torch.finfo(torch.float32).eps * expected.abs().max().item()
    assert gap <= allowed, (what, gap, allowed)


class _SamplingSpy:
    """Records, per step, the write-pass inputs, the read pass's timestep / embeds / K/V
    provenance and the generator state after the solver step, for either sampling path."""

    def __init__(self, pipe, monkeypatch):
        self.layers = pipe.store.layers
        denoise, read, write_batch = pipe.denoiser.step, pipe.denoiser.read, pipe.denoiser.write_batch

        def spy_denoise(model_in, reference_in, timestep, embeds, *, guidance):
            self._write(reference_in, timestep.expand(reference_in.shape[0]), embeds)
            self.reads.append((timestep.clone(), embeds.clone(), True))  # K/V stay inside the store
            return denoise(model_in, reference_in, timestep, embeds, guidance=guidance)

        def spy_write_batch(reference_in, timesteps, embeds):
            self._write(reference_in, timesteps, embeds)
            self.bank, self.read_in_chunk = write_batch(reference_in, timesteps, embeds), 0
            return self.bank

        def spy_read(model_in, timestep, embeds, *kv, guidance):
            # the j-th read after a write pass must get exactly that pass's j-th row block
            block = slice(self.read_in_chunk * self.rows, (self.read_in_chunk + 1) * self.rows)
            expected = [t[block] for name in self.layers for t in self.bank[name]]
            own = len(kv) == len(expected) and all(
                a.shape[0] == self.rows and torch.equal(a, b) for a, b in zip(kv, expected)
            )
            self.read_in_chunk += 1
            self.reads.append((timestep.clone(), embeds.clone(), own))
            return read(model_in, timestep, embeds, *kv, guidance=guidance)

        monkeypatch.setattr(pipe.denoiser, "step", spy_denoise)
        monkeypatch.setattr(pipe.denoiser, "write_batch", spy_write_batch)
        monkeypatch.setattr(pipe.denoiser, "read", spy_read)

    def start(self, rows_per_step, generator):
        self.rows, self.generator = rows_per_step, generator
        self.writes, self.reads, self.states = [], [], []
        self.bank, self.read_in_chunk = None, 0

    def _write(self, reference_in, timesteps, embeds):
        for k in range(0, reference_in.shape[0], self.rows):
            rows = slice(k, k + self.rows)
            self.writes.append((reference_in[rows].clone(), timesteps[rows].clone(), embeds[rows].clone()))

    def after_step(self, done, total):
        self.states.append(self.generator.get_state())

    def record(self):
        return {"writes": self.writes, "reads": self.reads, "states": self.states}


@pytest.fixture(scope="module")
def chunked_runs(pipe):
    """{(guidance, scheduler, reference_batch): (latents, final generator state, record)}, one shared pipeline."""
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        spy = _SamplingSpy(pipe, mp)
        for guidance, scheduler, batches in CHUNKED_RUNS:
            generator = pipe.make_generator(3)
            condition = pipe.encode_condition(_photo(11), guidance=guidance, generator=generator)
            start = generator.get_state()
            for batch in batches:
                gen = torch.Generator().set_state(start)
                spy.start(condition.reference_latents.shape[0], gen)
                latents = pipe.sample(
                    condition, steps=SAMPLE_STEPS, guidance=guidance, generator=gen, scheduler=scheduler,
                    height=SAMPLE_H, width=SAMPLE_W, reference_batch=batch, callback=spy.after_step,
                )
                runs[guidance, scheduler, batch] = (latents, gen.get_state(), spy.record())
    return runs


def _same_bits(a, b):
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(p, q)) if isinstance(p, tuple) else torch.equal(p, q)
        for p, q in zip(a, b)
    )


def test_batched_write_passes_draw_the_same_numbers(chunked_runs):
    """Every chunking feeds each step's write and read passes the bits step by step feeds them,
    lets a noise-drawing solver draw from the generator state step by step draws from, ends
    with the same generator state, and hands each read pass the K/V rows of its own step."""
    for guidance, scheduler, batches in CHUNKED_RUNS:
        _, ref_state, ref = chunked_runs[guidance, scheduler, 0]
        assert len(ref["writes"]) == len(ref["reads"]) == len(ref["states"]) == SAMPLE_STEPS
        for batch in batches[1:]:
            what = (guidance, scheduler, batch)
            _, state, got = chunked_runs[what]
            assert _same_bits(got["writes"], ref["writes"]), what  # noised reference, timestep, embeds rows
            if get_sampler(scheduler).step_draws_noise:  # the solver draws from where step by step does
                assert _same_bits(got["states"], ref["states"]), what
            assert torch.equal(state, ref_state), what
            assert _same_bits([r[:2] for r in got["reads"]], [r[:2] for r in ref["reads"]]), what
            assert all(own for *_, own in got["reads"]), what  # no step reads another step's K/V


def test_batched_write_passes_equal_step_by_step(chunked_runs):
    """One step per write pass is the step-by-step op sequence on the same shapes: the same bits.
    Several steps per pass change only the UNet kernels' batch sizes: equal up to fp32 rounding."""
    for guidance, scheduler, batches in CHUNKED_RUNS:
        ref = chunked_runs[guidance, scheduler, 0][0]
        for batch in batches[1:]:
            latents = chunked_runs[guidance, scheduler, batch][0]
            if batch == 1:
                assert torch.equal(latents, ref), (guidance, scheduler)
            else:
                _assert_same_up_to_fp32_rounding(latents, ref, (guidance, scheduler, batch))


def test_step_chunks_are_balanced():
    assert [len(c) for c in step_chunks(75, 15)] == [15] * 5
    assert [len(c) for c in step_chunks(25, 15)] == [13, 12]
    assert [len(c) for c in step_chunks(5, 2)] == [2, 2, 1]
    assert [len(c) for c in step_chunks(3, 10)] == [3]
    assert [len(c) for c in step_chunks(7, 1)] == [1] * 7
    for steps in range(1, 40):
        for batch in range(1, 20):
            chunks = step_chunks(steps, batch)
            assert [i for c in chunks for i in c] == list(range(steps))
            assert max(map(len, chunks)) <= batch and max(map(len, chunks)) - min(map(len, chunks)) <= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_noised_references_equal_the_scheduler_pair_bit_for_bit(dtype):
    """Our batched noising == Euler add_noise + scale_model_input (the official calls), per step, exactly."""
    from diffusers import EulerAncestralDiscreteScheduler

    steps = 75
    probe = build_scheduler("euler-a", SCHEDULER_CONFIG)
    probe.set_timesteps(steps)
    sigma = torch.from_numpy(reference_sigmas(probe, probe.timesteps))
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(2, 4, 8, 8, generator=g).to(dtype)
    noise = torch.randn(steps, 2, 4, 8, 8, generator=g).to(dtype)
    ours = noised_references(reference, noise, sigma.to(dtype), (sigma**2 + 1) ** 0.5).view(steps, 2, 4, 8, 8)
    for i in (0, 1, 20, 50, 74):
        sched = EulerAncestralDiscreteScheduler.from_config(SCHEDULER_CONFIG, timestep_spacing="trailing")
        sched.set_timesteps(steps)
        t = sched.timesteps[i]
        official = sched.scale_model_input(sched.add_noise(reference, noise[i], t.reshape(-1)), t)
        # Bit equality is safe here: elementwise + * / only, which IEEE 754 rounds
        # the same in SIMD and scalar code, at any batch size or thread count.
        assert official.dtype == dtype and torch.equal(ours[i], official), i


def test_reference_batch_option(tiny_folder, white_bin, pipe):
    with pytest.raises(UsageError):
        _run(pipe, _photo(0), reference_batch=-1)
    with pytest.raises(UsageError):
        Zero123PlusPipeline.from_folder(tiny_folder, unet_weights=white_bin, dtype="fp32", reference_batch=1.5)
    assert pipe.reference_batch == DEFAULT_REFERENCE_BATCH > 0


def test_condition_image_changes_the_output_through_reference_attention(pipe):
    a, b = _photo(1), _photo(2)
    ramp = pipe.components.ramping_coefficients
    assert not np.array_equal(np.asarray(_run(pipe, a)), np.asarray(_run(pipe, b)))
    # With the CLIP path switched off (ramp = 0) the image still reaches the output:
    # only the reference latents carry it then.
    pipe.components.ramping_coefficients = [0.0] * len(ramp)
    try:
        out_a, out_b = _run(pipe, a), _run(pipe, b)
    finally:
        pipe.components.ramping_coefficients = ramp
    assert not np.array_equal(np.asarray(out_a), np.asarray(out_b))


def test_same_seed_same_grid_other_seed_other_grid(pipe):
    image = _photo(4)
    first = _run(pipe, image, seed=5)
    assert first.size == (GRID_W, GRID_H) and first.mode == "RGB"
    again = _run(pipe, image, seed=5)
    other = _run(pipe, image, seed=6)
    # The same call twice: the same kernels on the same shapes and thread count, so the same bits.
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_other_schedulers_and_no_guidance(pipe):
    image = _photo(5)
    for name in ("dpm++2m", "unipc"):
        out = _run(pipe, image, scheduler=name, steps=4)
        assert out.size == (GRID_W, GRID_H)
    assert _run(pipe, image, guidance=1.0).size == (GRID_W, GRID_H)  # CFG off: batch of one
    with pytest.raises(UsageError):
        _run(pipe, image, scheduler="ddim-magic")
    with pytest.raises(UsageError):
        _run(pipe, image, steps=0)
    calls = []
    _run(pipe, image, steps=2, callback=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]


# --------------------------------------------------------------------------- schedulers


def test_scheduler_choices():
    assert get_sampler("euler-a").default_steps == 75
    assert set(SAMPLERS) >= {"euler-a", "dpm++2m"}
    euler = build_scheduler("euler-a", SCHEDULER_CONFIG)
    euler.set_timesteps(75)
    assert [int(t) for t in euler.timesteps[:3]] == [999, 986, 972]
    assert [int(t) for t in euler.timesteps[-2:]] == [26, 12]
    assert euler.config.prediction_type == "v_prediction" and euler.config.beta_schedule == "linear"
    assert float(euler.init_noise_sigma) == pytest.approx(25.15, abs=0.01)
    # the reference noise level is exactly the scheduler's own sigma at each step
    assert np.array_equal(reference_sigmas(euler, euler.timesteps), euler.sigmas[:-1].numpy())
    dpm = build_scheduler("dpm++2m", SCHEDULER_CONFIG)
    dpm.set_timesteps(25)
    assert int(dpm.timesteps[0]) == 999 and dpm.config.prediction_type == "v_prediction"
    # VP form: (x + sigma*eps)/sqrt(sigma^2+1) equals the VP scheduler's own add_noise
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = dpm.timesteps[5:6]
    sigma = float(reference_sigmas(dpm, t)[0])
    ours = (x0 + eps * sigma) / (sigma**2 + 1) ** 0.5
    assert torch.allclose(ours, dpm.add_noise(x0, eps, t), atol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_sampler_is_what_diffusers_from_config_builds(name):
    """Built without ``from_config`` (which imports every "compatible" scheduler class to sort the
    config): the same init config, timesteps, sigmas and step result."""
    ours = build_scheduler(name, SCHEDULER_CONFIG)
    theirs = type(ours).from_config(dict(SCHEDULER_CONFIG), **get_sampler(name).overrides)
    assert type(ours).__name__ == get_sampler(name).scheduler_class
    init = inspect.signature(type(ours).__init__).parameters
    assert {k: v for k, v in theirs.config.items() if k in init} == {k: v for k, v in ours.config.items() if k in init}
    assert ours.config.prediction_type == "v_prediction" and ours.config.timestep_spacing == "trailing"
    for s in (ours, theirs):
        s.set_timesteps(12)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert torch.equal(ours.sigmas, theirs.sigmas)
    x, v = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.ones(1, 4, 8, 8)
    for s in (ours, theirs):
        kw = {"generator": torch.Generator().manual_seed(2)} if "generator" in inspect.signature(s.step).parameters else {}
        s.out = s.step(v, s.timesteps[0], x, return_dict=False, **kw)[0]
    assert torch.equal(ours.out, theirs.out)


def test_building_a_sampler_imports_no_other_scheduler():
    code = textwrap.dedent("""
        import sys
        import instantmesh_cli.cli
        from instantmesh_cli.multiview.schedulers import build_scheduler
        build_scheduler("euler-a", {"num_train_timesteps": 1000, "beta_schedule": "linear"})
        print(sorted(m for m in sys.modules if m.startswith("diffusers.schedulers.scheduling_")), "scipy.stats" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == ["['diffusers.schedulers.scheduling_euler_ancestral_discrete',",
                                   "'diffusers.schedulers.scheduling_utils']", "False"]


# --------------------------------------------------------------------------- independent reference


class _ConcatProcessor:
    """Released mechanism written plainly: keep the normed tokens, concatenate them for K/V."""

    def __init__(self, name, state):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name, self.state, self.inner = name, state, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        if self.state["mode"] == "w":
            self.state["ref"][self.name] = hidden_states
            context = hidden_states
        else:
            context = torch.cat([hidden_states, self.state["ref"].pop(self.name)], dim=1)
        return self.inner(attn, hidden_states, context)


def test_matches_an_independent_implementation_of_the_released_flow(pipe, tiny_folder, white_bin):
    """A plain re-statement of reference/zero123plus.md §11 (official library calls only,
    draws in the documented order from one generator) gives the same final latents."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = tiny_folder
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
    tok = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    vision = CLIPVisionModelWithProjection.from_pretrained(folder, subfolder="vision_encoder").eval()
    unet = tiny_unet(0)
    unet.load_state_dict(torch.load(white_bin, weights_only=True), strict=True)
    unet.eval()
    state = {"mode": "w", "ref": {}}
    unet.set_attn_processor(
        {
            name: (_ConcatProcessor(name, state) if name.endswith("attn1.processor") else proc)
            for name, proc in unet.attn_processors.items()
        }
    )
    import json

    ramp = json.loads((folder / "model_index.json").read_text())["ramping_coefficients"]
    fx_vae = CLIPImageProcessorPil(**json.loads((folder / "feature_extractor_vae/preprocessor_config.json").read_text()))
    fx_clip = CLIPImageProcessorPil(
        **json.loads((folder / "feature_extractor_clip/preprocessor_config.json").read_text())
    )
    sched = EulerAncestralDiscreteScheduler.from_config(SCHEDULER_CONFIG, timestep_spacing="trailing")

    image, seed, steps, guidance = _photo(7), 123, 4, 4.0
    rgb = Image.new("RGB", image.size, (255, 255, 255))
    rgb.paste(image, mask=image.getchannel("A"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x_vae = torch.as_tensor(np.asarray(fx_vae(images=rgb)["pixel_values"]))
        x_clip = torch.as_tensor(np.asarray(fx_clip(images=rgb)["pixel_values"]))
        cond = vae.encode(x_vae).latent_dist.sample(gen)
        neg = vae.encode(torch.zeros_like(x_vae)).latent_dist.sample(gen)
        cond_lat = torch.cat([neg, cond])
        ids = tok("", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        empty = text(ids)[0]
        img = vision(x_clip).image_embeds.unsqueeze(-2)
        embeds = torch.cat([empty, empty + img * torch.tensor(ramp).unsqueeze(-1)])
        sched.set_timesteps(steps)
        latents = torch.randn(1, 4, GRID_H // 8, GRID_W // 8, generator=gen) * sched.init_noise_sigma
        for t in sched.timesteps:
            model_in = sched.scale_model_input(torch.cat([latents] * 2), t)
            noisy = sched.add_noise(cond_lat, torch.randn(cond_lat.shape, generator=gen), t.reshape(-1))
            noisy = sched.scale_model_input(noisy, t)
            state["mode"] = "w"
            unet(noisy, t, encoder_hidden_states=embeds)
            state["mode"] = "r"
            v = unet(model_in, t, encoder_hidden_states=embeds).sample
            uncond, cond_v = v.chunk(2)
            v = uncond + guidance * (cond_v - uncond)
            latents = sched.step(v, t, latents, generator=gen).prev_sample

    for batch in (None, 0):  # the default (write passes of all 4 steps in one call) and step by step
        ours = pipe.generate_latents(
            image, steps=steps, guidance=guidance, seed=seed, height=GRID_H, width=GRID_W, reference_batch=batch
        )
        assert ours.shape == latents.shape
        # other batch shapes than the plain flow's (stored K/V, batched write passes): fp32 rounding apart
        _assert_same_up_to_fp32_rounding(ours, latents, batch)


def test_fused_qkv_projection_gives_the_same_result(tiny_folder, white_bin, pipe):
    fused = Zero123PlusPipeline.from_folder(tiny_folder, unet_weights=white_bin, dtype="fp32", fuse_qkv=True)
    attn = fused.components.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1
    assert attn.fused_projections and attn.to_qkv.weight.shape[0] == 3 * attn.to_q.weight.shape[0]
    image = _photo(9)
    a = pipe.generate_latents(image, steps=2, height=GRID_H, width=GRID_W)
    b = fused.generate_latents(image, steps=2, height=GRID_H, width=GRID_W)
    _assert_same_up_to_fp32_rounding(b, a, "fused q/k/v")  # one GEMM for three: other blocking
