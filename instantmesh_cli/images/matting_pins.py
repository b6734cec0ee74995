"""The rembg model files imesh can fetch itself: name, release URL, md5, size.

The URLs and md5 sums are rembg's own pins, read from the ``download_models``
method of each session class of rembg 2.0.86 (``rembg/sessions/*.py``);
tests/test_matting_download.py compares this table with the installed rembg, so
an upgrade that moves a file or changes its checksum fails there rather than in a
user's download. Sizes are the release files' byte counts where they are known
(several public model manifests agree on them; u2netp's was measured on the
genuine file); ``None`` where not, and then only the md5 decides.

Left out, on purpose: models that send the image to a remote service or need a
credential (withoutbg, atlascloud), the ``*_custom`` sessions (a model_path, not a
name), SAM (several files per model), birefnet-general-fp16 (rembg converts it
locally from birefnet-general) and bria-rmbg (non-commercial licence, and pinned
by rembg with sha256, not md5). rembg still fetches those itself on first use.

Standard library only: ``imesh doctor`` reads this at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The rembg release the pins below were read from.
PINNED_FROM_REMBG = "2.0.86"

# Where rembg publishes its model files (one GitHub release, "v0.0.0", for all of them).
RELEASE_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"

# A base URL holding the same files under their release names, for sites that cannot
# reach github.com (and for tests): ``$IMESH_MATTING_URL/<release name>``.
MIRROR_ENV = "IMESH_MATTING_URL"


@dataclass(frozen=True)
class MattingFile:
    """One rembg model file as rembg pins it."""

    model: str  # the rembg session name (``--matting``)
    release_name: str  # the file's name in rembg's release, and on a mirror
    md5: str
    size: int | None = None  # bytes; None: unknown (the md5 still decides)

    @property
    def filename(self) -> str:
        """The name rembg looks for on disk (not always the release name: BiRefNet)."""
        return f"{self.model}.onnx"

    @property
    def release_url(self) -> str:
        return f"{RELEASE_URL}/{self.release_name}"

    def url(self) -> str:
        """Where to download it from: the mirror (``IMESH_MATTING_URL``) when set, else rembg's release."""
        base = os.environ.get(MIRROR_ENV, "").strip()
        return f"{base.rstrip('/')}/{self.release_name}" if base else self.release_url


_U2NET_BYTES = 175_997_641  # u2net and u2net_human_seg have the same architecture, hence size

PINNED: dict[str, MattingFile] = {f.model: f for f in (
    MattingFile("u2net", "u2net.onnx", "60024c5c889badc19c04ad937298a77b", _U2NET_BYTES),
    MattingFile("u2netp", "u2netp.onnx", "8e83ca70e441ab06c318d82300c84806", 4_574_861),
    MattingFile("u2net_human_seg", "u2net_human_seg.onnx", "c09ddc2e0104f800e3e1bb4652583d1f", _U2NET_BYTES),
    MattingFile("u2net_cloth_seg", "u2net_cloth_seg.onnx", "2434d1f3cb744e0e49386c906e5a08bb", 176_194_565),
    MattingFile("silueta", "silueta.onnx", "55e59e0d8062d2f5d013f4725ee84782", 44_173_029),
    MattingFile("isnet-general-use", "isnet-general-use.onnx", "fc16ebd8b0c10d971d3513d564d01e29", 178_648_008),
    MattingFile("isnet-anime", "isnet-anime.onnx", "6f184e756bb3bd901c8849220a83e38e"),
    MattingFile("birefnet-general", "BiRefNet-general-epoch_244.onnx", "7a35a0141cbbc80de11d9c9a28f52697"),
    MattingFile("birefnet-general-lite", "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
                "4fab47adc4ff364be1713e97b7e66334"),
    MattingFile("birefnet-portrait", "BiRefNet-portrait-epoch_150.onnx", "c3a64a6abf20250d090cd055f12a3b67"),
    MattingFile("birefnet-dis", "BiRefNet-DIS-epoch_590.onnx", "2d4d44102b446f33a4ebb2e56c051f2b"),
    MattingFile("birefnet-hrsod", "BiRefNet-HRSOD_DHU-epoch_115.onnx", "c017ade5de8a50ff0fd74d790d268dda"),
    MattingFile("birefnet-cod", "BiRefNet-COD-epoch_125.onnx", "f6d0d21ca89d287f17e7afe9f5fd3b45"),
    MattingFile("birefnet-massive", "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx",
                "33e726a2136a3d59eb0fdf613e31e3e9"),
)}


def pinned(model: str) -> MattingFile | None:
    """The pinned file of ``model``, or None for a model imesh leaves to rembg."""
    return PINNED.get(model)
