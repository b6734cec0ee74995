"""Pictures of meshes: preview sheets, turntables, a batch contact sheet and a quality signal.

Everything here reads mesh files (ours or another tool's) in the exported frame
(glTF: +Y up, front on +Z, +X to the viewer's right) and renders them with the
project's rasterizer (nvdiffrast on CUDA, the torch one elsewhere).

- :mod:`.meshfile`  ``load_mesh``: GLB / glTF / OBJ / PLY / STL → :class:`PreviewMesh` arrays
- :mod:`.render`    orbit cameras and a shaded, antialiased, batched renderer
- :mod:`.sheet`     ``preview_sheet`` (input photo + six azimuths), ``thumbnail``, ``contact_sheet``
- :mod:`.turntable` ``turntable`` frames and ``write_animation`` (GIF, MP4)
- :mod:`.quality`   ``mesh_quality``: PSNR and silhouette IoU against the six Zero123++ views

The submodules import numpy / torch / trimesh at import time; the CLI imports them
inside its command so that ``imesh --help`` stays fast.
"""
