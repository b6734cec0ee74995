"""Zero123++ v1.2 six-view generation: our own pipeline over diffusers/transformers parts.

One call, for one RGB(A) condition image (reference/zero123plus.md §11):

1. Conditioning (once per call):
   - RGBA is composited onto white (InstantMesh UNet) or grey 127 (original UNet);
   - VAE path → ``vae.encode(...).latent_dist`` sample, *unscaled* = reference latent;
     the negative (CFG) reference latent is the same for the all-zeros normalised
     image (mid grey);
   - CLIP path → ``image_embeds``; prompt embeds = CLIP-text("") + image_embeds x ramp
     (per token); the negative prompt embeds = CLIP-text("") alone;
   - batch order is [negative, positive] for both.
2. Sampling: initial latents x init_noise_sigma; per step the reference latents are
   noised at the same timestep (VP form), one UNet *write* pass on them stores the
   self-attention keys/values, one *read* pass on the latents predicts v; CFG; solver step.
3. Decode: (z / 0.75 + 0.22) / scaling_factor → VAE → x1.6 → x/2 + 0.5 → uint8.

Randomness: every draw comes from one ``torch.Generator`` on the compute device,
seeded per call, in this order: the condition's posterior sample, the negative's
posterior sample, the initial latents, then per step the reference noise (both CFG
halves at once) and the solver's noise. That is the official pipeline's order,
but the official code takes the VAE samples and the reference noise from torch's
*global* RNG (everything, when no generator is passed, as in InstantMesh's run.py,
which seeds once per process), so its results depend on what ran before. Here a
seed alone fixes the output on a given device and library versions; and with
``torch.manual_seed(seed)`` before an official call without a generator, both
draw the same numbers (on CPU/fp32 with shared tiny weights the final latents and
the grid matched bit for bit).

Performance: the text embedding of "" and the grey image's latent distribution
are computed once per pipeline; the reference latents and embeds once per call.
The step loop has no host synchronisation (no ``.item()``, no CPU copies; the
scheduler's begin index is set so it never searches the timesteps), so the GPU
runs ahead of Python and the two UNet passes + CFG can be replayed as one CUDA
graph (``cuda_graph``, on by default on CUDA unless ``low_vram``) and compiled
as one graph without breaks (``compile``: ``torch.compile`` of the denoiser,
opt-in because the first call compiles for about 1.5 minutes). ``channels_last``
(default on CUDA without ``compile``) runs the convolutions in NHWC. ``low_vram`` keeps only the part
in use on the GPU. Measured on one H100 (full-size random weights, fp16, 75
euler-a steps, 640x960, weights resident): eager 4.04 s (the official pipeline:
4.06 s); CUDA graph 2.73 s, + channels_last 2.67 s (peak 4.4 GiB); compile + CUDA
graph 1.85 s (fp16) / 1.82 s (bf16), peak 4.8 GiB, of which encode 29 ms and
decode 57 ms; low-VRAM 4.14 s at 2.06 GiB peak; dpm++2m 25 steps with a CUDA graph
0.97 s.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from PIL import Image

from instantmesh_cli.errors import DeviceError, UsageError
from instantmesh_cli.multiview.conditioning import GREY, WHITE, to_rgb
from instantmesh_cli.multiview.grid import GRID_HEIGHT, GRID_WIDTH
from instantmesh_cli.multiview.loading import Zero123PlusComponents, load_components
from instantmesh_cli.multiview.reference_attention import OFF, READ, WRITE, install_reference_attention
from instantmesh_cli.multiview.scaling import unscale_image, unscale_latents
from instantmesh_cli.multiview.schedulers import (
    DEFAULT_SAMPLER,
    build_scheduler,
    get_sampler,
    reference_sigmas,
    step_accepts_generator,
)

ProgressCallback = Callable[[int, int], None]  # (steps done, total steps)

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}") from None


@dataclass
class Condition:
    """What one condition image contributes, batched [negative, positive] under CFG."""

    prompt_embeds: torch.Tensor  # (B, 77, D)
    reference_latents: torch.Tensor  # (B, 4, h, w), unscaled VAE posterior samples


class _GraphedDenoiser:
    """Replays the two-pass denoiser as one CUDA graph per input signature.

    Inputs are copied into static buffers, the graph is replayed, and the static
    output is returned: it stays valid until the next call, which is all the solver
    step needs. The UNet's weights must not move while graphs exist.
    """

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn
        self.graphs: dict[tuple, tuple[Any, tuple[torch.Tensor, ...], torch.Tensor]] = {}

    def __call__(self, *args: torch.Tensor, guidance: float) -> torch.Tensor:
        key = tuple((a.shape, a.dtype) for a in args) + (guidance,)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._capture(args, guidance)
            self.graphs[key] = entry
        graph, static_in, static_out = entry
        for dst, src in zip(static_in, args):
            dst.copy_(src, non_blocking=True)
        graph.replay()
        return static_out

    def _capture(self, args: tuple[torch.Tensor, ...], guidance: float) -> tuple:
        with torch.cuda.device(args[0].device):  # streams and graphs belong to the inputs' GPU
            return self._capture_here(args, guidance)

    def _capture_here(self, args: tuple[torch.Tensor, ...], guidance: float) -> tuple:
        static_in = tuple(a.clone() for a in args)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up: lazy initialisation, kernel selection
                self.fn(*static_in, guidance=guidance)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(*static_in, guidance=guidance)
        return graph, static_in, static_out


class Zero123PlusPipeline:
    """Image → 3x2 grid of six views (640x960 by default), Zero123++ v1.2 with reference attention.

    Build with :meth:`from_folder` (a folder in the released layout) or from loaded
    :class:`Zero123PlusComponents`. Call with a PIL image; see :meth:`__call__`.
    """

    def __init__(
        self,
        components: Zero123PlusComponents,
        *,
        device: str | torch.device = "cpu",
        white_background: bool = True,
        low_vram: bool = False,
        compile: bool = False,
        cuda_graph: bool | None = None,
        channels_last: bool | None = None,
        fuse_qkv: bool = False,
        default_scheduler: str = DEFAULT_SAMPLER,
    ) -> None:
        self.components = components
        self.device = torch.device(device)
        self.dtype: torch.dtype = components.unet.dtype
        self.background = WHITE if white_background else GREY
        self.low_vram = low_vram and self.device.type != "cpu"
        self.default_scheduler = get_sampler(default_scheduler).name
        on_cuda = self.device.type == "cuda"
        if cuda_graph is None:  # measured on an H100: 75 steps 4.04 s -> 2.73 s, same result
            cuda_graph = on_cuda and not self.low_vram
        if channels_last is None:  # NHWC convolutions: a further ~2% on an H100 (compile picks layouts itself)
            channels_last = on_cuda and not compile
        if cuda_graph and self.device.type != "cuda":
            raise UsageError("CUDA graphs need a CUDA device")
        if cuda_graph and self.low_vram:
            raise UsageError("CUDA graphs cannot be combined with low-VRAM mode (the UNet moves between devices)")

        c = components
        self.vae_scale_factor = 2 ** (len(c.vae.config.block_out_channels) - 1)
        self.store = install_reference_attention(c.unet, fuse_qkv=fuse_qkv)
        if channels_last:
            c.unet.to(memory_format=torch.channels_last)
            c.vae.to(memory_format=torch.channels_last)
        # The text encoder is used once (for the "" embedding), so it never stays on the GPU.
        c.text_encoder.to("cpu")
        home = "cpu" if self.low_vram else self.device
        for module in (c.unet, c.vae, c.vision_encoder):
            module.to(home)

        self._text_embeds: torch.Tensor | None = None
        self._negative_posterior: tuple[torch.Tensor, torch.Tensor] | None = None
        denoise: Callable[..., torch.Tensor] = self._denoise
        if compile:
            denoise = torch.compile(denoise, dynamic=False)
        if cuda_graph:
            denoise = _GraphedDenoiser(denoise)
        self._denoiser = denoise

    # ------------------------------------------------------------------ building
    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        *,
        unet_weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        dtype: str | torch.dtype = "fp16",
        device: str | torch.device = "cpu",
        **options: Any,
    ) -> "Zero123PlusPipeline":
        """Load the parts from ``folder``; ``unet_weights`` = the white-background UNet (None: the folder's own)."""
        dtype = parse_dtype(dtype)
        device = torch.device(device)
        if device.type == "cpu" and dtype == torch.float16:
            raise UsageError("fp16 is not supported on the CPU; use --dtype fp32 or bf16")
        components = load_components(folder, unet_weights=unet_weights, dtype=dtype)
        options.setdefault("white_background", unet_weights is not None)
        return cls(components, device=device, **options)

    # ------------------------------------------------------------------ placement
    @contextlib.contextmanager
    def _on_device(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Use ``module`` on the compute device; in low-VRAM mode move it there and back."""
        if not self.low_vram:
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")

    # ------------------------------------------------------------------ conditioning
    def text_embeddings(self) -> torch.Tensor:
        """CLIP-text embedding of the empty prompt, (1, 77, D); computed once per pipeline."""
        if self._text_embeds is None:
            c = self.components
            ids = c.tokenizer(
                "", padding="max_length", max_length=c.tokenizer.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids
            encoder = c.text_encoder
            encoder.to(self.device)
            try:
                with torch.inference_mode():
                    self._text_embeds = encoder(ids.to(self.device))[0].to(self.dtype).clone()
            finally:
                encoder.to("cpu")
        return self._text_embeds

    def _negative_distribution(self, vae: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the VAE posterior of the all-zeros normalised image (cached)."""
        if self._negative_posterior is None:
            size = self.components.vae_transform.output_size
            if size is None:
                raise UsageError("feature_extractor_vae has no crop size; cannot build the negative reference")
            zeros = torch.zeros(1, 3, *size, device=self.device, dtype=self.dtype)
            dist = vae.encode(zeros).latent_dist
            self._negative_posterior = (dist.mean.clone(), dist.std.clone())
        return self._negative_posterior

    def _draw(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)

    @torch.inference_mode()
    def encode_condition(self, image: Image.Image, *, guidance: float, generator: torch.Generator) -> Condition:
        """Prompt embeds and reference latents for one image (draws the two posterior samples)."""
        c = self.components
        rgb = to_rgb(image, self.background)
        vae_in = c.vae_transform(rgb).to(self.device, self.dtype)
        clip_in = c.clip_transform(rgb).to(self.device, self.dtype)
        cfg = guidance > 1

        with self._on_device(c.vae) as vae:
            dist = vae.encode(vae_in).latent_dist
            latents = [dist.mean + dist.std * self._draw(dist.mean.shape, generator)]
            if cfg:
                mean, std = self._negative_distribution(vae)
                latents.insert(0, mean + std * self._draw(mean.shape, generator))
        with self._on_device(c.vision_encoder) as vision:
            image_embeds = vision(clip_in).image_embeds.unsqueeze(-2)  # (1, 1, D)

        text = self.text_embeddings()
        ramp = image_embeds.new_tensor(c.ramping_coefficients).unsqueeze(-1)  # (77, 1)
        positive = text + image_embeds * ramp
        embeds = torch.cat([text, positive]) if cfg else positive
        return Condition(prompt_embeds=embeds, reference_latents=torch.cat(latents))

    # ------------------------------------------------------------------ sampling
    def _denoise(
        self,
        model_in: torch.Tensor,
        reference_in: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        *,
        guidance: float,
    ) -> torch.Tensor:
        """Write pass on the noised reference, read pass on the latents, then CFG → guided v."""
        unet, store = self.components.unet, self.store
        store.mode = WRITE
        unet(reference_in, timestep, encoder_hidden_states=embeds, return_dict=False)
        store.mode = READ
        out = unet(model_in, timestep, encoder_hidden_states=embeds, return_dict=False)[0]
        store.mode = OFF
        if guidance > 1:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        return out

    @torch.inference_mode()
    def sample(
        self,
        condition: Condition,
        *,
        steps: int,
        guidance: float,
        generator: torch.Generator,
        scheduler: str | None = None,
        height: int = GRID_HEIGHT,
        width: int = GRID_WIDTH,
        callback: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """Run the solver; returns the final latents (1, 4, height/8, width/8), still scaled."""
        c = self.components
        sched = build_scheduler(scheduler or self.default_scheduler, c.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        sched.set_begin_index(0)  # no timestep search (a host sync) inside the loop
        timesteps = sched.timesteps
        unet_t = timesteps.to(torch.float32)
        sigma = torch.from_numpy(reference_sigmas(sched, timesteps))
        ref_sigma = sigma.to(self.device, self.dtype)
        ref_denominator = ((sigma**2 + 1) ** 0.5).to(self.device)
        pass_generator = step_accepts_generator(sched)

        shape = (1, c.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = self._draw(torch.Size(shape), generator) * sched.init_noise_sigma
        reference = condition.reference_latents
        embeds = condition.prompt_embeds
        cfg = guidance > 1
        extra = {"generator": generator} if pass_generator else {}

        self.store.clear()
        with self._on_device(c.unet):
            for i in range(len(timesteps)):
                t = timesteps[i]
                model_in = torch.cat([latents] * 2) if cfg else latents
                model_in = sched.scale_model_input(model_in, t)
                noise = self._draw(reference.shape, generator)
                reference_in = (reference + noise * ref_sigma[i]) / ref_denominator[i]
                v = self._denoiser(model_in, reference_in, unet_t[i], embeds, guidance=guidance)
                latents = sched.step(v, t, latents, return_dict=False, **extra)[0]
                if callback is not None:
                    callback(i + 1, len(timesteps))
        self.store.clear()
        return latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> Image.Image:
        """Final latents → RGB grid image."""
        vae = self.components.vae
        with self._on_device(vae) as vae:
            z = unscale_latents(latents.to(self.dtype)) / vae.config.scaling_factor
            image = unscale_image(vae.decode(z, return_dict=False)[0])
        image = (image * 0.5 + 0.5).clamp(0, 1)
        pixels = (image[0].float() * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(pixels, "RGB")

    # ------------------------------------------------------------------ public call
    def _check_call(self, steps: int, guidance: float, height: int, width: int) -> None:
        if steps < 1:
            raise UsageError(f"--steps must be at least 1 (got {steps})")
        if not math.isfinite(guidance) or guidance < 0:
            raise UsageError(f"--guidance must be a non-negative number (got {guidance})")
        if height % self.vae_scale_factor or width % self.vae_scale_factor or height <= 0 or width <= 0:
            raise UsageError(f"output size must be a positive multiple of {self.vae_scale_factor} (got {width}x{height})")

    def make_generator(self, seed: int) -> torch.Generator:
        try:
            return torch.Generator(device=self.device).manual_seed(int(seed))
        except RuntimeError as exc:
            raise DeviceError(f"cannot create a random generator on {self.device}: {exc}") from None

    def generate_latents(
        self,
        image: Image.Image,
        *,
        steps: int | None = None,
        guidance: float = 4.0,
        seed: int = 42,
        scheduler: str | None = None,
        height: int = GRID_HEIGHT,
        width: int = GRID_WIDTH,
        callback: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """Like :meth:`__call__` but returns the final (scaled) latents instead of the image."""
        name = get_sampler(scheduler or self.default_scheduler).name
        steps = get_sampler(name).default_steps if steps is None else int(steps)
        self._check_call(steps, guidance, height, width)
        generator = self.make_generator(seed)
        condition = self.encode_condition(image, guidance=guidance, generator=generator)
        return self.sample(
            condition,
            steps=steps,
            guidance=guidance,
            generator=generator,
            scheduler=name,
            height=height,
            width=width,
            callback=callback,
        )

    def __call__(
        self,
        image: Image.Image,
        *,
        steps: int | None = None,
        guidance: float = 4.0,
        seed: int = 42,
        scheduler: str | None = None,
        height: int = GRID_HEIGHT,
        width: int = GRID_WIDTH,
        callback: ProgressCallback | None = None,
    ) -> Image.Image:
        """Six views of the object in ``image`` as one ``width`` x ``height`` grid (3 rows x 2 columns).

        ``steps`` defaults to the scheduler's step count (euler-a: 75); ``guidance``
        is the classifier-free guidance scale (<= 1 turns CFG off); ``seed`` fixes
        every random draw; ``callback(done, total)`` is called after each step
        (from the Python loop; it does not wait for the GPU).
        """
        latents = self.generate_latents(
            image,
            steps=steps,
            guidance=guidance,
            seed=seed,
            scheduler=scheduler,
            height=height,
            width=width,
            callback=callback,
        )
        return self.decode(latents)
