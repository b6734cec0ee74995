"""Multi-view inputs for the reconstruction model: grid or view files → checked views → tensor.

The model expects the Zero123++ views in camera order (reference/instantmesh.md
§5.3): either one 3x2 grid (640 wide, 960 tall; tiles read row-major) or the six
tiles as separate square images, or — in four-view mode — views 0, 2, 4, 5.
Transparent pixels are composited on white (the model was trained on white
backgrounds). Views are resized to the model's input size as the official
``run.py`` does (bicubic with antialiasing, clamped to [0, 1]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from instantmesh_cli.errors import InputError, UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image


def _square(img: "Image.Image", label: str) -> None:
    w, h = img.size
    if w != h:
        raise InputError(f"{label} is {w}×{h}; a view must be square (a 3×2 view grid is 2 tiles wide and 3 high)")


def views_from_images(images: Sequence["Image.Image"], labels: Sequence[str], views: int = 6) -> list["Image.Image"]:
    """The ``views`` RGB views in camera order from one grid image or from separate view images.

    - one image: a 3x2 grid (width:height = 2:3) of square tiles; with ``views=4`` tiles 0, 2, 4, 5 are used;
    - six images: the six views in camera order (``views=4`` keeps 0, 2, 4, 5);
    - four images (only with ``views=4``): views 0, 2, 4, 5 in that order.
    """
    from instantmesh_cli.images import composite_on
    from instantmesh_cli.multiview.grid import split_grid
    from instantmesh_cli.reconstruction.cameras import view_indices

    if views not in (4, 6):
        raise UsageError(f"--views must be 4 or 6, got {views}")
    keep = list(view_indices(views))
    if len(images) == 1:
        w, h = images[0].size
        if w * 3 != h * 2 or w % 2:
            raise InputError(
                f"{labels[0]} is {w}×{h}; a view grid is 2 square tiles wide and 3 high (640×960 from Zero123++), "
                "or give the views as separate files"
            )
        tiles = split_grid(images[0])
        return [composite_on(tiles[i]) for i in keep]
    if len(images) == 6:
        chosen = [(images[i], labels[i]) for i in keep]
    elif len(images) == 4 and views == 4:
        chosen = list(zip(images, labels))
    else:
        hint = "six view files (or four with --views 4)" if views == 6 or len(images) != 4 else "four view files"
        raise UsageError(f"got {len(images)} images; give one 3×2 view grid or {hint} in camera order")
    for img, label in chosen:
        _square(img, label)
    return [composite_on(img) for img, _ in chosen]


def views_to_tensor(views: Sequence["Image.Image"], size: int) -> "torch.Tensor":
    """(1, V, 3, size, size) float32 in [0, 1]; views of another size are resized (bicubic, antialiased)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    out = []
    for img in views:
        t = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        if t.shape[1:] != (size, size):
            t = F.interpolate(t[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]
            t = t.clamp(0.0, 1.0)
        out.append(t)
    return torch.stack(out)[None]
