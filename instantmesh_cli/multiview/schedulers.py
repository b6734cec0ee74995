"""Samplers for the multi-view diffusion, built from the model's own scheduler config.

The released ``scheduler_config.json`` (reference/zero123plus.md §1) has linear
betas 0.00085–0.012, ``v_prediction`` and ``steps_offset`` 1; every sampler here
keeps those and only changes the solver and the timestep spacing:

- ``euler-a`` (default, 75 steps): Euler ancestral with ``timestep_spacing='trailing'``,
  exactly what the Zero123++ README and InstantMesh use. Trailing spacing starts
  at t=999, where v-prediction with this schedule was trained to start.
- ``dpm++2m`` (25 steps): DPM-Solver++ 2M (multistep, second order, data
  prediction), trailing spacing, final step to sigma 0. DPM-Solver++ was designed
  for guided sampling and reaches converged samples in about 15–20 model
  evaluations at guidance scales like ours (Lu et al. 2022); 25 leaves a margin for
  the fine detail Zero123++ users care about. Deterministic: no noise per step.
- ``unipc`` (20 steps): UniPC (bh2 predictor-corrector), trailing spacing; the
  diffusers default fast solver, comparable to DPM-Solver++ at ~20 steps.

These step counts are not yet validated on the released weights (none are
reachable here); ``--steps`` overrides them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    default_steps: int
    description: str
    scheduler_class: str  # the diffusers class
    overrides: Mapping[str, Any]  # what this sampler changes in the model's scheduler config
    # True when the solver's step() draws one noise tensor shaped like the latents
    # (in the model dtype) from the generator: the pipeline must replay that draw in
    # order when it draws the reference noise of several steps ahead.
    step_draws_noise: bool = False

    def build(self, config: Mapping[str, Any]) -> Any:
        """``scheduler_class(**config, **overrides)`` with only the keys its ``__init__`` takes: what
        diffusers' ``from_config`` builds, less the bookkeeping it adds to the config (``_class_name``,
        the keys of "compatible" classes). To find those, ``from_config`` imports every compatible
        scheduler class, the KDPM2 ones with ``scipy.stats``: 0.3-0.6 s of a cold start on the H200,
        inside the first views."""
        import diffusers

        cls = getattr(diffusers, self.scheduler_class)
        accepted = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in {**config, **self.overrides}.items() if k in accepted and k != "self"})


SAMPLERS: dict[str, SamplerSpec] = {
    s.name: s
    for s in (
        SamplerSpec(
            "euler-a", 75, "Euler ancestral, trailing timesteps (the official setting)",
            "EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}, step_draws_noise=True,
        ),
        SamplerSpec(
            "dpm++2m", 25, "DPM-Solver++ 2M, trailing timesteps (deterministic, ~3x fewer steps)",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
             "timestep_spacing": "trailing", "final_sigmas_type": "zero", "lower_order_final": True},
        ),
        SamplerSpec(
            "unipc", 20, "UniPC bh2, trailing timesteps (deterministic, fewest steps)", "UniPCMultistepScheduler",
            {"solver_type": "bh2", "timestep_spacing": "trailing", "final_sigmas_type": "zero"},
        ),
    )
}
DEFAULT_SAMPLER = "euler-a"


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        from instantmesh_cli.errors import UsageError

        raise UsageError(f"unknown scheduler {name!r}; choose one of: {', '.join(SAMPLERS)}") from None


def build_scheduler(name: str, config: Mapping[str, Any]) -> Any:
    """A fresh scheduler object (schedulers carry per-run state, so one per call)."""
    return get_sampler(name).build(config)


def step_accepts_generator(scheduler: Any) -> bool:
    return "generator" in inspect.signature(scheduler.step).parameters


def reference_sigmas(scheduler: Any, timesteps: torch.Tensor) -> np.ndarray:
    """Euler-form noise level sigma_t = sqrt((1 - abar_t) / abar_t) at each sampling timestep (float32).

    The condition latent is noised at the same timestep as the denoising latent, in
    variance-preserving form: (x0 + sigma * eps) / sqrt(sigma^2 + 1)
    = sqrt(abar) x0 + sqrt(1 - abar) eps. For Euler this is what the official
    ``add_noise`` + ``scale_model_input`` pair gives; for the VP-form solvers it is
    their own ``add_noise``. Computed as the Euler scheduler does (float32 table,
    numpy interpolation, float32 result), so Euler trailing gives values identical
    to ``scheduler.sigmas``.
    """
    abar = scheduler.alphas_cumprod.float().cpu()
    table = (((1 - abar) / abar) ** 0.5).numpy()
    t = timesteps.detach().cpu().double().numpy()
    return np.interp(t, np.arange(len(table)), table).astype(np.float32)


def noised_references(
    reference: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, denominator: torch.Tensor
) -> torch.Tensor:
    """The write-pass inputs of ``k`` steps at once: ``(reference + sigma*noise) / sqrt(sigma^2 + 1)``.

    ``reference`` (B, C, h, w) and ``noise`` (k, B, C, h, w) in the model dtype;
    ``sigma`` (k,) in the model dtype, ``denominator`` (k,) float32 on the CPU
    (``reference_sigmas`` and ``(sigma**2 + 1) ** 0.5``). Returns (k*B, C, h, w),
    step-major. Rounds as the official pair ``add_noise`` + ``scale_model_input``
    does element by element: ``add_noise`` works in the model dtype with sigma cast
    to it; ``scale_model_input`` divides by a CPU float32 scalar, which torch turns
    into a float32 division on the CPU and a multiplication by the float32
    reciprocal on CUDA, rounded once to the model dtype. Elementwise only, so
    one step alone and many steps together give the same bits.
    """
    steps = noise.shape[0]
    view = (steps,) + (1,) * reference.dim()
    noisy = reference + noise * sigma.to(noise.device).view(view)
    if noisy.device.type == "cuda":
        scaled = noisy.float() * (1.0 / denominator).to(noisy.device).view(view)
    else:
        scaled = noisy.float() / denominator.to(noisy.device).view(view)
    return scaled.to(reference.dtype).flatten(0, 1)
