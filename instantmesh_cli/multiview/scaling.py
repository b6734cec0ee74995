"""Zero123++ v1.2 latent and image scaling constants (reference/zero123plus.md §4).

The model was trained on latents shifted and scaled so that their statistics
match natural-image latents (zero123plus#86), and on images squeezed into
[-0.625, 0.625]:

- training target latents: ``scale_latents(vae.encode(scale_image(x)) * scaling_factor)``
- sampled latents are decoded as ``unscale_image(vae.decode(unscale_latents(z) / scaling_factor))``.

The condition (reference) latent is *not* scaled: it is the raw VAE posterior
sample of the image normalised with mean 0.5 / std 0.8, about 5x larger than
a "scaled" latent, on purpose (zero123plus#66).

These functions work on tensors or plain floats.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

LATENT_SHIFT = 0.22
LATENT_SCALE = 0.75
IMAGE_SCALE = 0.8  # model images are x * 0.5 / 0.8 for x in [-1, 1], i.e. (p - 0.5) / 0.8 for pixels p in [0, 1]


def scale_latents(latents: T) -> T:
    return (latents - LATENT_SHIFT) * LATENT_SCALE  # type: ignore[operator]


def unscale_latents(latents: T) -> T:
    return latents / LATENT_SCALE + LATENT_SHIFT  # type: ignore[operator]


def scale_image(image: T) -> T:
    return image * 0.5 / IMAGE_SCALE  # type: ignore[operator]


def unscale_image(image: T) -> T:
    return image / 0.5 * IMAGE_SCALE  # type: ignore[operator]
