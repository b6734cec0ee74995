"""Zero123++ v1.2 six-view generation: our own pipeline over diffusers/transformers parts.

One call, for one RGB(A) condition image (reference/zero123plus.md §11):

1. Conditioning, once per call (:mod:`condition_encoder`): the prompt embeds (CLIP-text("")
   plus the ramped image embedding) and the reference latents (a VAE posterior sample),
   batched [negative, positive] under CFG.
2. Sampling: initial latents x init_noise_sigma; per step the reference latents are
   noised at the same timestep (VP form), one UNet *write* pass on them stores the
   self-attention keys/values, one *read* pass on the latents predicts v; CFG; solver step.
   The write pass's input does not depend on the sampling path, so by default the
   write passes of ``reference_batch`` steps run as one batched UNet call
   (per-sample timesteps) and each step's read pass takes its rows of the stored
   keys/values; ``reference_batch=0`` runs them step by step.
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
the grid matched bit for bit). Batched write passes keep that order: all reference
noise is drawn up front, and for euler-a each step's solver draw is made there too
(to move the generator on) and made again by the solver from the generator state
saved before it. One step per batch reproduces the step-by-step latents bit for bit
(CPU tests; CUDA fp16 eager, H200); larger batches change only GEMM rounding
(H200 fp16, 75 steps: latents differ by at most 0.0098, mean 0.0012; grid pixels
by at most 3/255).

Performance: the text embedding of "" and the grey image's latent distribution
are computed once per pipeline; the reference latents and embeds once per call.
The step loop has no host synchronisation (no ``.item()``, no CPU copies; the
scheduler's begin index is set so it never searches the timesteps), so the GPU
runs ahead of Python and the two UNet passes + CFG can be replayed as one CUDA
graph (``cuda_graph``, on by default on CUDA unless ``low_vram``), and each batched
write pass as a graph of its own (launched from Python they were host-bound: 2.051 s ->
1.701 s on the H200, same bytes). ``compile``
(opt-in) runs both passes under ``torch.compile`` (:mod:`compiled`: the first process
on a machine compiles for a minute or two, later ones read Inductor's on-disk cache);
:meth:`warm_up` does that, and the graph capture, before the first call. ``channels_last``
(default on CUDA without ``compile``) runs the convolutions in NHWC and keeps the activations
NHWC between them (:mod:`channels_last`; 2.325 s -> 1.986 s on the H200, within 2/255), and
with Triton its GroupNorms run fused with their neighbours (:mod:`group_norm_kernels`; 2.288 s
-> 2.044 s), as do GEGLU's gates and the ResNet blocks' convolution biases (:mod:`elementwise_kernels`,
:mod:`geglu`; 1.699 s -> 1.619 s).
``low_vram`` keeps only the part in use on the GPU. Measured on one H100 (full-size random
weights, fp16, 75 euler-a steps, 640x960, weights resident): eager 4.04 s (the official pipeline:
4.06 s); CUDA graph 2.73 s, + channels_last 2.67 s (peak 4.4 GiB); compile + CUDA
graph 1.85 s (fp16) / 1.82 s (bf16), peak 4.8 GiB, of which encode 29 ms and
decode 57 ms; low-VRAM 4.14 s at 2.06 GiB peak; dpm++2m 25 steps with a CUDA graph
0.97 s. Batched write passes (``reference_batch``; one H200, same setting, weights
2.97 GiB resident): CUDA graph 2.54 s step by step -> 2.32 s in batches of 5 (peak
4.2 -> 4.7 GiB; 2.27 s in batches of 15 at 7.7 GiB); eager 3.40 s -> 2.34 s (batches
of 15); dpm++2m 25 steps 0.91 -> 0.82 s. Per step the read pass (22.7 ms, CUDA
graph) is now three quarters of the time. Low-VRAM mode stays step by step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from PIL import Image

from instantmesh_cli.device import parse_dtype
from instantmesh_cli.errors import DeviceError, UsageError
from instantmesh_cli.multiview.channels_last import keep_channels_last
from instantmesh_cli.multiview.condition_encoder import Condition, ConditionEncoder
from instantmesh_cli.multiview.conditioning import GREY, WHITE
from instantmesh_cli.multiview.denoiser import Denoiser
from instantmesh_cli.multiview.geglu import fuse_geglu
from instantmesh_cli.multiview.grid import GRID_HEIGHT, GRID_WIDTH
from instantmesh_cli.multiview.loading import Zero123PlusComponents, load_components
from instantmesh_cli.multiview.placement import Placement
from instantmesh_cli.multiview.reference_attention import install_reference_attention
from instantmesh_cli.multiview.scaling import unscale_image, unscale_latents
from instantmesh_cli.multiview.schedulers import (
    DEFAULT_SAMPLER,
    get_sampler,
    noised_references,
    reference_sigmas,
    step_accepts_generator,
)

if TYPE_CHECKING:
    from instantmesh_cli.multiview.compiled import CompiledPasses

ProgressCallback = Callable[[int, int], None]  # (steps done, total steps)

# Steps whose reference (write) passes run as one batched UNet call. Measured on an
# H200 (fp16, 75 euler-a steps, CUDA graph): write pass 16.7 ms per step alone
# (eager), 7.0 ms per step in batches of 5, 6.3 in batches of 15 or 25; the stored
# keys/values take 88 MiB per step and the batched pass's activations grow with
# the batch: peak 4.2 GiB step by step, 4.7 GiB with 5, 5.6 with 8, 7.7 with 15.
# 5 keeps the peak well under 6 GB for 97% of the speed of 15.
DEFAULT_REFERENCE_BATCH = 5


def _check_reference_batch(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"reference batch must be a whole number >= 0 (got {value!r})")
    return value


def step_chunks(steps: int, batch: int) -> list[range]:
    """Split ``range(steps)`` into consecutive chunks of at most ``batch`` steps, sizes within one of each other.

    75 steps by 15 → five chunks of 15; 25 by 15 → 13 + 12 (not 15 + a small, inefficient 10).
    """
    count = -(-steps // batch)
    base, extra = divmod(steps, count)
    chunks, start = [], 0
    for k in range(count):
        stop = start + base + (k < extra)
        chunks.append(range(start, stop))
        start = stop
    return chunks


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
        reference_batch: int | None = None,
        default_scheduler: str = DEFAULT_SAMPLER,
        compile_log: Callable[[str], None] | None = None,
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
        if compile and self.low_vram:
            raise UsageError("--compile cannot be combined with --low-vram (the compiled passes use the UNet's "
                             "weights where they are)")
        if reference_batch is None:  # low-VRAM keeps its small peak: one step's keys/values at a time
            reference_batch = 0 if self.low_vram else DEFAULT_REFERENCE_BATCH
        self.reference_batch = _check_reference_batch(reference_batch)

        c = components
        self.vae_scale_factor = 2 ** (len(c.vae.config.block_out_channels) - 1)
        self.store = install_reference_attention(c.unet, fuse_qkv=fuse_qkv)
        if channels_last:
            c.unet.to(memory_format=torch.channels_last)
            c.vae.to(memory_format=torch.channels_last)
            keep_channels_last(c.unet, c.vae)  # and the activations between the convolutions (channels_last.py)
        if not compile:  # the feed-forward gates in one pass where Triton runs (geglu.py); Inductor fuses its own
            fuse_geglu(c.unet)
        # The text encoder is used once (for the "" embedding), so it never stays on the GPU.
        if c.text_encoder is not None:
            c.text_encoder.to("cpu")
        home = "cpu" if self.low_vram else self.device
        for module in (c.unet, c.vae, c.vision_encoder):
            module.to(home)

        self.placement = Placement(self.device, self.low_vram)
        self.conditioner = ConditionEncoder(c, device=self.device, dtype=self.dtype, background=self.background,
                                            placement=self.placement)
        self.denoiser = Denoiser(c.unet, self.store, cuda_graph=cuda_graph, compile=compile, compile_log=compile_log)

    @property
    def compiled(self) -> "CompiledPasses | None":
        """The compiled passes (``compile``), whose first calls the bench reports; None otherwise."""
        return self.denoiser.compiled

    # ------------------------------------------------------------------ building
    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        *,
        unet_weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        dtype: str | torch.dtype = "fp16",
        device: str | torch.device = "cpu",
        text_embeds: torch.Tensor | None = None,
        **options: Any,
    ) -> "Zero123PlusPipeline":
        """Load the parts from ``folder``; ``unet_weights`` = the white-background UNet (None: the folder's own).

        ``text_embeds``: the empty-prompt embedding of these weights, computed earlier; the text
        encoder is then not loaded at all.
        """
        dtype = parse_dtype(dtype)
        device = torch.device(device)
        if device.type == "cpu" and dtype == torch.float16:
            raise UsageError("fp16 is not supported on the CPU; use --dtype fp32 or bf16")
        # Read the big weight files straight onto the GPU, unless low-VRAM mode keeps them on the CPU.
        direct = device if device.type != "cpu" and not options.get("low_vram") else None
        components = load_components(folder, unet_weights=unet_weights, dtype=dtype, with_text_encoder=text_embeds is None,
                                     device=direct)
        options.setdefault("white_background", unet_weights is not None)
        pipe = cls(components, device=device, **options)
        if text_embeds is not None:
            pipe.set_text_embeddings(text_embeds)
        return pipe

    # ------------------------------------------------------------------ conditioning
    def set_text_embeddings(self, embeds: torch.Tensor) -> None:
        """Use ``embeds`` (one earlier :meth:`text_embeddings` of the same weights) instead of the text encoder."""
        self.conditioner.set_text_embeddings(embeds)

    def drop_text_encoder(self) -> None:
        """Free the text encoder once the embedding is known: it is never needed again."""
        self.conditioner.drop_text_encoder()

    def text_embeddings(self) -> torch.Tensor:
        """CLIP-text embedding of the empty prompt, (1, 77, D); computed once per pipeline."""
        return self.conditioner.text_embeddings()

    def encode_condition(self, image: Image.Image, *, guidance: float, generator: torch.Generator) -> Condition:
        """Prompt embeds and reference latents for one image (draws the two posterior samples)."""
        return self.conditioner.encode(image, guidance=guidance, generator=generator)

    def _draw(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ sampling
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
        reference_batch: int | None = None,
    ) -> torch.Tensor:
        """Run the solver; returns the final latents (1, 4, height/8, width/8), still scaled.

        ``reference_batch`` (default: the pipeline's) = how many steps' write passes
        run as one batched UNet call; 0 runs write + read step by step. Every value
        draws the same random numbers in the same order and computes the same thing;
        only the GEMM batch sizes, hence the last-bit rounding of some products, differ.
        """
        c = self.components
        spec = get_sampler(scheduler or self.default_scheduler)
        sched = spec.build(c.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        sched.set_begin_index(0)  # no timestep search (a host sync) inside the loop
        timesteps = sched.timesteps
        unet_t = timesteps.to(torch.float32)
        sigma = torch.from_numpy(reference_sigmas(sched, timesteps))
        ref_sigma = sigma.to(self.device, self.dtype)
        ref_denominator = (sigma**2 + 1) ** 0.5  # float32 on the CPU, as scale_model_input computes it
        chunk = self.denoiser.steps_per_write(self.reference_batch if reference_batch is None
                                      else _check_reference_batch(reference_batch))

        shape = (1, c.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = self._draw(torch.Size(shape), generator) * sched.init_noise_sigma
        reference = condition.reference_latents
        embeds = condition.prompt_embeds
        cfg = guidance > 1
        extra = {"generator": generator} if step_accepts_generator(sched) else {}

        def solver_step(i: int, v: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            latents = sched.step(v, timesteps[i], latents, return_dict=False, **extra)[0]
            if callback is not None:
                callback(i + 1, len(timesteps))
            return latents

        def model_input(i: int, latents: torch.Tensor) -> torch.Tensor:
            return sched.scale_model_input(torch.cat([latents] * 2) if cfg else latents, timesteps[i])

        self.store.clear()
        with self.placement.use(c.unet):
            if chunk == 0:
                # Step by step: draw the reference noise, write pass, read pass, solver step.
                for i in range(len(timesteps)):
                    model_in = model_input(i, latents)
                    noise = self._draw(reference.shape, generator)
                    reference_in = noised_references(
                        reference, noise[None], ref_sigma[i : i + 1], ref_denominator[i : i + 1]
                    )
                    v = self.denoiser.step(model_in, reference_in, unet_t[i], embeds, guidance=guidance)
                    latents = solver_step(i, v, latents)
            else:
                # Draw every step's reference noise now, in the step-by-step order: after
                # step i's reference noise comes the solver's own draw for step i, which is
                # drawn here too (to move the generator on) and drawn again by the solver
                # from the generator state saved before it.
                ref_noise, solver_states = [], []
                for _ in range(len(timesteps)):
                    ref_noise.append(self._draw(reference.shape, generator))
                    if spec.step_draws_noise and extra:
                        solver_states.append(generator.get_state())
                        self._draw(latents.shape, generator)
                per_step = reference.shape[0]
                for steps_here in step_chunks(len(timesteps), chunk):
                    first, count = steps_here.start, len(steps_here)
                    reference_in = noised_references(
                        reference,
                        torch.stack(ref_noise[first : first + count]),
                        ref_sigma[first : first + count],
                        ref_denominator[first : first + count],
                    )
                    bank = self.denoiser.write_batch(
                        reference_in,
                        unet_t[first : first + count].repeat_interleave(per_step),
                        embeds.repeat(count, 1, 1),
                    )
                    for j, i in enumerate(steps_here):
                        rows = slice(j * per_step, (j + 1) * per_step)
                        kv = [t[rows] for name in self.store.layers for t in bank[name]]
                        v = self.denoiser.read(model_input(i, latents), unet_t[i], embeds, *kv, guidance=guidance)
                        if solver_states:
                            generator.set_state(solver_states[i])
                        latents = solver_step(i, v, latents)
                    del bank
        self.store.clear()
        return latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> Image.Image:
        """Final latents → RGB grid image."""
        vae = self.components.vae
        with self.placement.use(vae) as vae:
            z = unscale_latents(latents.to(self.dtype)) / vae.config.scaling_factor
            image = unscale_image(vae.decode(z, return_dict=False)[0])
        image = (image * 0.5 + 0.5).clamp(0, 1)
        pixels = (image[0].float() * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(pixels, "RGB")

    # ------------------------------------------------------------------ warm-up
    @torch.inference_mode()
    def warm_up(
        self,
        *,
        steps: int | None = None,
        guidance: float = 4.0,
        scheduler: str | None = None,
        height: int = GRID_HEIGHT,
        width: int = GRID_WIDTH,
    ) -> float:
        """Do now what the first call with these settings would do first: compile the passes (with
        ``compile``; after the first process on a machine, mostly from Inductor's cache), capture
        the CUDA graph, and run the encoders and the decoder once. Returns the seconds it took (0.0
        when there is nothing to prepare: eager, no graph). A server does this at start, so its
        first job runs at the steady speed. Nothing here touches a call's random numbers.
        """
        if self.compiled is None and not self.denoiser.graphed:
            return 0.0
        start = time.perf_counter()
        c = self.components
        _, steps = self._checked_call(scheduler, steps, guidance, height, width)
        per_step = 2 if guidance > 1 else 1
        size = c.vae_transform.output_size
        if size is None:
            raise UsageError("feature_extractor_vae has no crop size; cannot build the reference latents")
        reference_shape = (c.unet.config.in_channels, size[0] // self.vae_scale_factor, size[1] // self.vae_scale_factor)
        latent_shape = (c.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        text = self.text_embeddings()
        embeds = text.expand(per_step, -1, -1).contiguous()
        timestep = torch.tensor(500.0, device=self.device)  # any value: only shapes and dtypes matter here
        model_in = torch.zeros(per_step, *latent_shape, device=self.device, dtype=self.dtype)
        chunk = self.denoiser.steps_per_write(self.reference_batch)
        self.store.clear()
        # No low-VRAM placement here: neither a graph nor compilation is used with it.
        if chunk == 0:
            reference_in = torch.zeros(per_step, *reference_shape, device=self.device, dtype=self.dtype)
            self.denoiser.step(model_in, reference_in, timestep, embeds, guidance=guidance)
        else:
            for count in sorted({len(r) for r in step_chunks(steps, chunk)}):
                rows = count * per_step
                reference_in = torch.zeros(rows, *reference_shape, device=self.device, dtype=self.dtype)
                bank = self.denoiser.write_batch(reference_in, timestep.expand(rows).contiguous(), embeds.repeat(count, 1, 1))
            kv = [t[:per_step] for name_ in self.store.layers for t in bank[name_]]
            self.denoiser.read(model_in, timestep, embeds, *kv, guidance=guidance)
        self.store.clear()
        # The rest of a first call: the condition encoders (and the cached negative latent) and
        # the decoder at this output size, so their first-use set-up is not the first job's either.
        self.encode_condition(Image.new("RGB", size[::-1], "white"), guidance=guidance, generator=self.make_generator(0))
        self.decode(model_in[:1])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    # ------------------------------------------------------------------ public call
    def _checked_call(
        self, scheduler: str | None, steps: int | None, guidance: float, height: int, width: int
    ) -> tuple[str, int]:
        """The sampler's name and the step count (its default when None), the call's settings checked."""
        name = get_sampler(scheduler or self.default_scheduler).name
        steps = get_sampler(name).default_steps if steps is None else int(steps)
        self._check_call(steps, guidance, height, width)
        return name, steps

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
        reference_batch: int | None = None,
    ) -> torch.Tensor:
        """Like :meth:`__call__` but returns the final (scaled) latents instead of the image.

        ``reference_batch`` overrides the pipeline's (see :meth:`sample`).
        """
        name, steps = self._checked_call(scheduler, steps, guidance, height, width)
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
            reference_batch=reference_batch,
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
        reference_batch: int | None = None,
    ) -> Image.Image:
        """Six views of the object in ``image`` as one ``width`` x ``height`` grid (3 rows x 2 columns).

        ``steps`` defaults to the scheduler's step count (euler-a: 75); ``guidance``
        is the classifier-free guidance scale (<= 1 turns CFG off); ``seed`` fixes
        every random draw; ``callback(done, total)`` is called after each step
        (from the Python loop; it does not wait for the GPU); ``reference_batch``
        overrides the pipeline's (see :meth:`sample`).
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
            reference_batch=reference_batch,
        )
        return self.decode(latents)
