"""Model variants, Hub repositories, pinned revisions and defaults.

Every file the tool may fetch is listed here, so ``imesh download`` can fetch
exactly that set and ``imesh doctor`` can say what is missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# A weights folder's own revisions (``hub.declared_revisions``): repo id -> revision.
Revisions = Mapping[str, str]

INSTANTMESH_REPO = "TencentARC/InstantMesh"
ZERO123PLUS_REPO = "sudo-ai/zero123plus-v1.2"
DINO_REPO = "facebook/dino-vitb16"


@dataclass(frozen=True)
class ModelVariant:
    """A reconstruction model the user can pick with ``--model``.

    Its architecture lives with the model code (``reconstruction.config.VARIANT_CONFIGS``,
    keyed by ``name``): this registry names files, it builds nothing.
    """

    name: str
    checkpoint: str  # file name in INSTANTMESH_REPO
    kind: str  # "mesh" (FlexiCubes) or "nerf" (marching cubes)

    @property
    def uses_flexicubes(self) -> bool:
        return self.kind == "mesh"


VARIANTS: dict[str, ModelVariant] = {
    v.name: v
    for v in (
        ModelVariant("instant-mesh-large", "instant_mesh_large.ckpt", "mesh"),
        ModelVariant("instant-mesh-base", "instant_mesh_base.ckpt", "mesh"),
        ModelVariant("instant-nerf-large", "instant_nerf_large.ckpt", "nerf"),
        ModelVariant("instant-nerf-base", "instant_nerf_base.ckpt", "nerf"),
    )
}
DEFAULT_VARIANT = "instant-mesh-large"


def get_variant(name: str) -> ModelVariant:
    from instantmesh_cli.errors import UsageError

    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}") from None


# Defaults of the official run (reference/instantmesh.md §5, reference/zero123plus.md §6).
DEFAULT_STEPS = 75
DEFAULT_GUIDANCE = 4.0
DEFAULT_SEED = 42
DEFAULT_FOREGROUND_RATIO = 0.85
DEFAULT_TEXTURE_SIZE = 1024
DEFAULT_REFINE_STEPS = 20
# rembg's u2net (Apache-2.0); reasons in images.py beside the matting code.
DEFAULT_MATTING_MODEL = "u2net"


# ---------------------------------------------------------------------------
# Weights registry: every file the tool may fetch, with pinned revisions.
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HubFile:
    """One file of a Hub model repository at a fixed revision.

    ``size`` / ``sha256`` are set only where a public source states them for this
    revision; ``None`` means "not known" (the Hub's own ETag still verifies the
    bytes on download and in the cache, see hub.py).
    """

    repo_id: str
    filename: str
    revision: str
    size: int | None = None
    sha256: str | None = None

    @property
    def is_pickle(self) -> bool:
        """Pickled PyTorch files: opened only with ``torch.load(weights_only=True)``."""
        return self.filename.endswith((".ckpt", ".bin", ".pt", ".pth"))

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.filename}"


# Pinned Hub commits. Sources (public code that records the commit of the files it
# used; the Hub itself is not reachable from the development machines):
# - TencentARC/InstantMesh b785b4e…: HF cache paths
#   ``models--TencentARC--InstantMesh/snapshots/b785b4e…`` and explicit pins with a
#   link to huggingface.co/TencentARC/InstantMesh/tree/b785b4e… in several
#   independent projects.
# - sudo-ai/zero123plus-v1.2 2da07e8…: HF cache paths
#   ``models--sudo-ai--zero123plus-v1.2/snapshots/2da07e8…`` and ``revision=`` pins
#   in several independent projects.
# - facebook/dino-vitb16 f205d5d…: explicit ``revision`` pins of the DINO config in
#   several independent projects.
# Each can be overridden with IMESH_REVISION_<REPO> (see ``revision_env_var``), e.g.
# when the Hub gets a new commit; the registry's sizes/hashes then no longer apply.
PINNED_REVISIONS: dict[str, str] = {
    INSTANTMESH_REPO: "b785b4ecfb6636ef34a08c748f96f6a5686244d0",
    ZERO123PLUS_REPO: "2da07e89919e1a130c9b5add1584c70c7aa065fd",
    DINO_REPO: "f205d5d8e640a89a2b8ef0369670dfc37cc07fc2",
}

# (repo, revision, file) -> (size in bytes, sha256), only where a public source
# states them; never guessed. Tests replace this mapping for their tiny stand-ins.
FILE_FACTS: dict[tuple[str, str, str], tuple[int | None, str | None]] = {
    # A public model catalogue pinning this exact commit states both values.
    (INSTANTMESH_REPO, "b785b4ecfb6636ef34a08c748f96f6a5686244d0", "instant_mesh_base.ckpt"): (
        1_253_574_354,
        "22701cd25201d624ebb1568b93cf91b43a2c32006835c08fe73e1f3c9f6c44b5",
    ),
    # Public download manifests state this hash at this commit (and 454 bytes with it).
    (DINO_REPO, "f205d5d8e640a89a2b8ef0369670dfc37cc07fc2", "config.json"): (
        454,
        "b87c0270b97db085fd82cf114a761fd0f62ae7914fbd407c752a2260646b689c",
    ),
}

# InstantMesh's fine-tuned Zero123++ UNet (white background). It replaces every
# tensor of the sudo-ai UNet, so that one's weights are not needed by default.
WHITE_UNET_FILE = "diffusion_pytorch_model.bin"
ZERO123PLUS_UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
# The sudo-ai/zero123plus-v1.2 files a diffusers/transformers loader reads, laid out
# as in the repo (model_index.json names the components).
ZERO123PLUS_FILES: tuple[str, ...] = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "vision_encoder/config.json",
    "vision_encoder/model.safetensors",
    "feature_extractor_clip/preprocessor_config.json",
    "feature_extractor_vae/preprocessor_config.json",
)
# DINO ViT-B/16: the LRM checkpoints hold all encoder weights; only the config and
# the image normalisation (preprocessor) are read from this repo.
DINO_FILES: tuple[str, ...] = ("config.json", "preprocessor_config.json")


def revision_env_var(repo_id: str) -> str:
    """``TencentARC/InstantMesh`` -> ``IMESH_REVISION_TENCENTARC_INSTANTMESH``."""
    return "IMESH_REVISION_" + re.sub(r"[^A-Z0-9]+", "_", repo_id.upper()).strip("_")


def revision_for(repo_id: str, revisions: Revisions | None = None) -> str:
    """The revision to request for ``repo_id``: the env override, else the one a weights folder
    declares it holds (``revisions``: fine-tuned or stand-in files), else the pinned commit."""
    override = os.environ.get(revision_env_var(repo_id), "").strip()
    if override:
        return override
    if revisions and revisions.get(repo_id):
        return revisions[repo_id]
    try:
        return PINNED_REVISIONS[repo_id]
    except KeyError:
        raise KeyError(f"no pinned revision for {repo_id}") from None


def hub_file(repo_id: str, filename: str, revisions: Revisions | None = None) -> HubFile:
    """A registry entry: the current revision plus the size/hash known for it."""
    revision = revision_for(repo_id, revisions)
    size, sha256 = FILE_FACTS.get((repo_id, revision, filename), (None, None))
    return HubFile(repo_id, filename, revision, size, sha256)


def white_unet_file(revisions: Revisions | None = None) -> HubFile:
    return hub_file(INSTANTMESH_REPO, WHITE_UNET_FILE, revisions)


def zero123plus_files(*, original_unet: bool = False, revisions: Revisions | None = None) -> list[HubFile]:
    """The sudo-ai/zero123plus-v1.2 files (``original_unet`` adds its own UNet weights)."""
    names = ZERO123PLUS_FILES + ((ZERO123PLUS_UNET_WEIGHTS,) if original_unet else ())
    return [hub_file(ZERO123PLUS_REPO, name, revisions) for name in names]


def multiview_files(*, original_unet: bool = False, revisions: Revisions | None = None) -> list[HubFile]:
    """Everything the multi-view stage reads: the Zero123++ pipeline + the white-background UNet."""
    return zero123plus_files(original_unet=original_unet, revisions=revisions) + [white_unet_file(revisions)]


def dino_files(revisions: Revisions | None = None) -> list[HubFile]:
    return [hub_file(DINO_REPO, name, revisions) for name in DINO_FILES]


def lrm_files(variant_name: str, revisions: Revisions | None = None) -> list[HubFile]:
    """The reconstruction checkpoint of ``variant_name`` (first) plus the DINO config files."""
    variant = get_variant(variant_name)
    return [hub_file(INSTANTMESH_REPO, variant.checkpoint, revisions)] + dino_files(revisions)


# A weights folder may carry the reconstruction model's architecture beside its checkpoint
# (``DIR/TencentARC/InstantMesh/imesh-lrm-config-<variant>.json``), for checkpoints that are
# not the released ones (fine-tuned at another size, or stand-ins). Never fetched from the Hub.
def lrm_config_file(variant_name: str, revisions: Revisions | None = None) -> HubFile:
    return hub_file(INSTANTMESH_REPO, f"imesh-lrm-config-{get_variant(variant_name).name}.json", revisions)


def model_files(variant_name: str, revisions: Revisions | None = None) -> list[HubFile]:
    """Every file ``imesh generate --model variant_name`` needs (what ``imesh download`` fetches)."""
    return _unique(multiview_files(revisions=revisions) + lrm_files(variant_name, revisions))


def all_files() -> list[HubFile]:
    """Every registered file of every variant (``imesh download --all``)."""
    return _unique([f for name in VARIANTS for f in model_files(name)])


def _unique(files: list[HubFile]) -> list[HubFile]:
    seen: set[tuple[str, str]] = set()
    out: list[HubFile] = []
    for f in files:
        if (f.repo_id, f.filename) not in seen:
            seen.add((f.repo_id, f.filename))
            out.append(f)
    return out


def cache_dir() -> Path:
    """imesh's own cache (converted checkpoints, verification stamps, folder views, locks, bytecode)."""
    return Path(os.environ.get("IMESH_CACHE_DIR") or Path.home() / ".cache" / "imesh").expanduser()


_TRUE = ("1", "ON", "YES", "TRUE")


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``.

    Read from the environment on every call (huggingface_hub reads it once, at
    import), so that ``--offline`` and tests can switch it at any time.
    """
    if offline is not None:
        return offline
    return any(os.environ.get(var, "").strip().upper() in _TRUE
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def weights_dir_setting(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """``weights_dir``, else ``IMESH_WEIGHTS_DIR``, expanded; ``None`` if neither is set (not checked here)."""
    value = weights_dir if weights_dir is not None else os.environ.get("IMESH_WEIGHTS_DIR") or None
    return None if value is None else Path(value).expanduser()
