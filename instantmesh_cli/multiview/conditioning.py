"""Condition-image preparation for Zero123++ (reference/zero123plus.md §4–5).

Two views of the same RGB image feed the model:

- the VAE path (``feature_extractor_vae``): shortest edge to 512 (bilinear), centre
  crop 512², pixels / 255, then (x - 0.5) / 0.8;
- the CLIP path (``feature_extractor_clip``): shortest edge to 224 (bicubic), centre
  crop 224², pixels / 255, OpenAI CLIP mean/std.

Both follow the released ``preprocessor_config.json`` files, read with
:meth:`ImageTransform.from_config`. We do not run transformers' image processors:
newer transformers prefer "fast" torchvision processors whose resampling differs
from PIL, and the PIL backend cannot take CUDA tensors. Resizing is done with PIL
exactly as the slow processor does; normalising is plain torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

WHITE = (255, 255, 255)  # InstantMesh's white-background UNet was fine-tuned on white
GREY = (127, 127, 127)  # the original v1.2 UNet's fill


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """RGB as is; anything with transparency composited onto ``background`` with its alpha."""
    if image.mode == "RGB":
        return image
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def _triple(value: float | Sequence[float]) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) == 1:
        return values * 3
    if len(values) != 3:
        raise ValueError(f"expected 1 or 3 channel values, got {len(values)}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class ImageTransform:
    """Resize shortest edge → centre crop → rescale → normalise, as a CLIPImageProcessor config says."""

    shortest_edge: int | None
    resample: int
    crop_height: int | None
    crop_width: int | None
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ImageTransform":
        size = config.get("size", {}) if config.get("do_resize", True) else {}
        if isinstance(size, int):
            size = {"shortest_edge": size}
        crop = config.get("crop_size", {}) if config.get("do_center_crop", True) else {}
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        normalize = config.get("do_normalize", True)
        return cls(
            shortest_edge=size.get("shortest_edge"),
            resample=int(config.get("resample", 3)),
            crop_height=crop.get("height"),
            crop_width=crop.get("width"),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0,
            mean=_triple(config.get("image_mean", 0.0)) if normalize else (0.0, 0.0, 0.0),
            std=_triple(config.get("image_std", 1.0)) if normalize else (1.0, 1.0, 1.0),
        )

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of the result when it does not depend on the input (centre crop set)."""
        if self.crop_height and self.crop_width:
            return (self.crop_height, self.crop_width)
        return None

    def resize_and_crop(self, image: Image.Image) -> Image.Image:
        if self.shortest_edge:
            width, height = image.size
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
            size = (new_short, new_long) if width <= height else (new_long, new_short)
            if size != image.size:
                image = image.resize(size, resample=Image.Resampling(self.resample), reducing_gap=None)
        if self.crop_height and self.crop_width:
            width, height = image.size
            top = (height - self.crop_height) // 2
            left = (width - self.crop_width) // 2
            if top < 0 or left < 0:
                raise ValueError(f"image {width}x{height} is smaller than the crop {self.crop_width}x{self.crop_height}")
            image = image.crop((left, top, left + self.crop_width, top + self.crop_height))
        return image

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """(1, 3, H, W) float32 tensor on the CPU."""
        image = self.resize_and_crop(to_rgb(image))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        # Same arithmetic as the slow processor: rescale in float64, normalise in float32.
        x = (pixels.double() * self.rescale_factor).float()
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return ((x - mean) / std).unsqueeze(0)
