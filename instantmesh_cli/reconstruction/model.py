"""The InstantMesh reconstruction model: views + cameras → triplane → mesh.

``ReconstructionModel(cfg)`` builds any of the four released variants (or a tiny
test configuration) from its :class:`LRMConfig` alone; its state-dict keys equal
the released checkpoints' keys after stripping ``lrm_generator.``
(reference/instantmesh.md §3):

- ``encoder``: camera-modulated DINO ViT (:mod:`.encoder`),
- ``transformer``: triplane transformer (:mod:`.transformer`),
- ``synthesizer.decoder``: MLP heads (:mod:`.decoder`).

Precision: ``compute_dtype`` (float32, float16 or bfloat16) is the autocast type
of the encoder and transformer, the heavy part. The planes are returned in
float32, and the decoder heads and surface extraction always run in float32, so
the mesh depends on the lower precision only through the planes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from instantmesh_cli.reconstruction.config import LRMConfig
from instantmesh_cli.reconstruction.decoder import MeshDecoder, NeRFDecoder, Synthesizer
from instantmesh_cli.reconstruction.encoder import CameraConditionedEncoder
from instantmesh_cli.reconstruction.transformer import TriplaneTransformer
from instantmesh_cli.reconstruction.triplane import sample_triplane

POINT_CHUNK = 2**18  # points per decoder call when querying many points (bounds temporary memory)


class ReconstructionModel(nn.Module):
    def __init__(self, cfg: LRMConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = CameraConditionedEncoder(cfg.encoder)
        self.transformer = TriplaneTransformer(
            dim=cfg.transformer_dim,
            cond_dim=cfg.encoder.hidden_size,
            low_res=cfg.triplane_low_res,
            out_channels=cfg.triplane_dim,
            num_layers=cfg.transformer_layers,
            num_heads=cfg.transformer_heads,
        )
        head = MeshDecoder if cfg.kind == "mesh" else NeRFDecoder
        self.synthesizer = Synthesizer(head(cfg.triplane_dim, cfg.decoder_hidden))
        self.compute_dtype: torch.dtype = torch.float32

    # ------------------------------------------------------------------ structure
    @property
    def decoder(self) -> MeshDecoder | NeRFDecoder:
        """The MLP heads (``synthesizer.decoder``)."""
        return self.synthesizer.decoder

    @property
    def color_head(self) -> nn.Module:
        """The colour MLP (``net_rgb`` for mesh variants, the shared ``net`` for NeRF variants)."""
        return self.synthesizer.decoder.color_head

    @property
    def is_mesh(self) -> bool:
        return self.cfg.kind == "mesh"

    @property
    def device(self) -> torch.device:
        return self.transformer.pos_embed.device

    # ------------------------------------------------------------------ views → planes
    def _autocast(self, device: torch.device):
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.compute_dtype)

    def forward_planes(self, images: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """images (B, V, 3, H, W) RGB in [0, 1] on white; cameras (B, V, 16) → planes (B, 3, C, 2L, 2L) float32."""
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
        if cameras.shape != (*images.shape[:2], self.cfg.encoder.camera_dim):
            raise ValueError(f"cameras must be {(*images.shape[:2], self.cfg.encoder.camera_dim)}, got {tuple(cameras.shape)}")
        b, v = images.shape[:2]
        with self._autocast(images.device):
            tokens = self.encoder(images, cameras)  # (B*V, T, D)
            # All views' tokens of one sample form one sequence, view-major, CLS tokens kept.
            tokens = tokens.reshape(b, v * tokens.shape[1], tokens.shape[2])
            planes = self.transformer(tokens)
        return planes.float()

    forward = forward_planes

    # ------------------------------------------------------------------ planes → values
    def features(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Triplane features (B, M, 3C) at points (B, M, 3) in the model frame."""
        return sample_triplane(planes, points)

    def query_color(self, planes: torch.Tensor, points: torch.Tensor, chunk: int = POINT_CHUNK) -> torch.Tensor:
        """RGB (B, M, 3) at points (B, M, 3), nominally in [0, 1] (not clamped; differentiable)."""
        outs = [
            self.decoder.color(self.features(planes, points[:, i : i + chunk]))
            for i in range(0, max(points.shape[1], 1), chunk)
        ]
        return torch.cat(outs, dim=1)

    def extract_mesh(self, planes: torch.Tensor, *, surface_only: bool = True):
        """The surface of sample 0 as a :class:`~instantmesh_cli.mesh.Mesh` with vertex colours (model frame).

        Mesh variants: FlexiCubes on the SDF grid (``surface_only=False``: every cube's
        weights evaluated, like the official code); NeRF variants: marching cubes on the density grid.
        """
        from instantmesh_cli.reconstruction import surface

        if planes.shape[0] != 1:
            raise ValueError("extract_mesh takes the planes of one sample (batch size 1)")
        if self.is_mesh:
            return surface.flexicubes_mesh(self, planes, surface_only=surface_only)
        return surface.density_mesh(self, planes)


# The official class name, for readers who know the original code.
InstantMeshModel = ReconstructionModel
