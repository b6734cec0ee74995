"""One local folder in the released Zero123++ layout, for ``from_pretrained(folder, subfolder=...)``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from instantmesh_cli import settings
from instantmesh_cli.hub.download import Progress
from instantmesh_cli.hub.fetch import fetch
from instantmesh_cli.hub.paths import cache_dir


def multiview_folder(*, original_unet: bool = False, offline: bool | None = None,
                     weights_dir: str | os.PathLike[str] | None = None,
                     progress: Progress | None = None, revisions: settings.Revisions | None = None) -> Path:
    """A local folder laid out like sudo-ai/zero123plus-v1.2 (model_index.json, vae/, unet/config.json…).

    Usable with ``from_pretrained(folder, subfolder=...)``. The sudo-ai UNet weights
    are only included with ``original_unet`` (InstantMesh's white-background UNet,
    ``weights_file(settings.white_unet_file())``, replaces all of them).
    """
    files = settings.zero123plus_files(original_unet=original_unet, revisions=revisions)
    paths = [fetch(f, offline=offline, weights_dir=weights_dir, progress=progress) for f in files]
    roots = {_root_of(path, f.filename) for path, f in zip(paths, files)}
    if len(roots) == 1 and None not in roots:
        return roots.pop()  # type: ignore[return-value]
    # Files come from different places (weights dir + cache): link them into one folder.
    revision = files[0].revision
    folder = cache_dir() / "folders" / f"{files[0].repo_id.replace('/', '--')}@{revision}"
    for path, f in zip(paths, files):
        link = folder / f.filename
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.resolve() == path.resolve():
                continue
            link.unlink()
        try:
            link.symlink_to(path.resolve())
        except OSError:  # no symlinks (some Windows set-ups)
            shutil.copy2(path, link)
    return folder


def _root_of(path: Path, filename: str) -> Path | None:
    parts = Path(filename).parts
    if path.parts[-len(parts):] != parts:
        return None
    return Path(*path.parts[:-len(parts)])
