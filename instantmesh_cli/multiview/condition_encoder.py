"""What one condition image contributes to a Zero123++ call (reference/zero123plus.md §3 and §11, step 1).

- RGBA is composited onto white (InstantMesh's UNet) or grey 127 (the original UNet);
- VAE path → the ``latent_dist`` sample, *unscaled*, is the reference latent; the negative (CFG)
  reference latent is a sample of the posterior of the all-zeros normalised image (mid grey);
- CLIP path → ``image_embeds``; prompt embeds = CLIP-text("") + image_embeds x ramp (per token);
  the negative prompt embeds are CLIP-text("") alone;
- batch order [negative, positive] for both.

The text embedding of "" and the grey image's posterior are computed once per encoder; the two
posterior samples are drawn from the call's generator, condition first (the pipeline's order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from instantmesh_cli.errors import UsageError
from instantmesh_cli.multiview.conditioning import to_rgb
from instantmesh_cli.multiview.loading import Zero123PlusComponents
from instantmesh_cli.multiview.placement import Placement


@dataclass
class Condition:
    """What one condition image contributes, batched [negative, positive] under CFG."""

    prompt_embeds: torch.Tensor  # (B, 77, D)
    reference_latents: torch.Tensor  # (B, 4, h, w), unscaled VAE posterior samples


class ConditionEncoder:
    """The condition image → :class:`Condition`, with the text and negative-latent parts kept once computed."""

    def __init__(self, components: Zero123PlusComponents, *, device: torch.device, dtype: torch.dtype,
                 background: tuple[int, int, int], placement: Placement) -> None:
        self.components = components
        self.device = device
        self.dtype = dtype
        self.background = background
        self.placement = placement
        self._text_embeds: torch.Tensor | None = None
        self._negative_posterior: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_text_embeddings(self, embeds: torch.Tensor) -> None:
        """Use ``embeds`` (one earlier :meth:`text_embeddings` of the same weights) instead of the text encoder."""
        self._text_embeds = embeds.to(self.device, self.dtype)

    def drop_text_encoder(self) -> None:
        """Free the text encoder once the embedding is known: it is never needed again."""
        self.text_embeddings()
        self.components.text_encoder = self.components.tokenizer = None

    def text_embeddings(self) -> torch.Tensor:
        """CLIP-text embedding of the empty prompt, (1, 77, D); computed once."""
        if self._text_embeds is None:
            c = self.components
            if c.text_encoder is None:
                raise RuntimeError("built without its text encoder and given no text embedding")
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

    def _sample(self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return mean + std * torch.randn(mean.shape, generator=generator, device=self.device, dtype=self.dtype)

    @torch.inference_mode()
    def encode(self, image: Image.Image, *, guidance: float, generator: torch.Generator) -> Condition:
        """Prompt embeds and reference latents for one image (draws the two posterior samples)."""
        c = self.components
        rgb = to_rgb(image, self.background)
        vae_in = c.vae_transform(rgb).to(self.device, self.dtype)
        clip_in = c.clip_transform(rgb).to(self.device, self.dtype)
        cfg = guidance > 1

        with self.placement.use(c.vae) as vae:
            dist = vae.encode(vae_in).latent_dist
            latents = [self._sample(dist.mean, dist.std, generator)]
            if cfg:
                latents.insert(0, self._sample(*self._negative_distribution(vae), generator))
        with self.placement.use(c.vision_encoder) as vision:
            image_embeds = vision(clip_in).unsqueeze(-2)  # (1, 1, D)

        text = self.text_embeddings()
        ramp = image_embeds.new_tensor(c.ramping_coefficients).unsqueeze(-1)  # (77, 1)
        positive = text + image_embeds * ramp
        embeds = torch.cat([text, positive]) if cfg else positive
        return Condition(prompt_embeds=embeds, reference_latents=torch.cat(latents))
