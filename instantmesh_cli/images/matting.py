"""Background removal: where rembg's model files live, and one session per model.

Model location is answered without importing rembg (``imesh doctor`` asks at
start-up): a weights folder's ``DIR/rembg/<name>.onnx`` first, then rembg's own
places; the session is created on first use through :mod:`.rembg_sessions`. The
files imesh can download itself are in :mod:`.matting_pins`, fetched by
:mod:`.matting_fetch`.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from instantmesh_cli.errors import ImeshError, UsageError, WeightsError
from instantmesh_cli.settings import is_offline, weights_dir_setting
from instantmesh_cli.images.loading import _reason

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL.Image import Image

# Default rembg model: u2net.
# - Licence: Apache-2.0 (U^2-Net). bria-rmbg (rembg's own default since 2.0.7x) is
#   CC BY-NC 4.0, unusable commercially, so it must never be picked implicitly.
# - Fidelity: it is the model the official InstantMesh run.py used (``rembg.new_session()``
#   defaulted to u2net then), as did TripoSR, SF3D and TRELLIS; Zero123++ with the
#   white-background UNet was tuned on cut-outs of this quality.
# - Speed: 320² input (isnet-general-use and birefnet-* run at 1024², ~10× the pixels);
#   rembg[cpu] runs on onnxruntime's CPU provider even on the GPU machine, where u2net
#   takes a fraction of a second and birefnet-general several seconds.
# - Size: one 176 MB download (birefnet-general is ~1 GB).
# Users who want finer edges can pick ``--matting isnet-general-use`` (Apache-2.0) or
# ``--matting birefnet-general`` (MIT, best quality, slowest).
DEFAULT_MATTING_MODEL = "u2net"


def rembg_home() -> Path:
    """rembg's model root (where it downloads to): ``$U2NET_HOME`` when set."""
    # Mirrors rembg 2.0.86 BaseSession.rembg_home(): U2NET_HOME wins, then REMBG_HOME,
    # then $XDG_DATA_HOME/rembg or ~/.rembg. Replicated so `imesh doctor` can answer
    # without importing rembg; tests compare it with rembg's own answer.
    if os.getenv("U2NET_HOME"):
        return _legacy_home()
    xdg = os.getenv("XDG_DATA_HOME")
    default = os.path.join(xdg, "rembg") if xdg else os.path.join("~", ".rembg")
    return Path(os.path.expanduser(os.getenv("REMBG_HOME", default)))


def _legacy_home() -> Path:
    # rembg BaseSession.legacy_home(): the flat pre-2.0.70 folder, still read.
    return Path(os.path.expanduser(os.getenv("U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net"))))


# imesh's place for matting models in a weights folder (``imesh download --to DIR``):
# DIR/rembg/<name>.onnx, beside the Hub repos' DIR/<owner>/<repo>/ folders.
WEIGHTS_SUBDIR = "rembg"


def in_weights_dir(weights_dir: Path, model: str) -> Path:
    """Where ``model`` lives in a weights folder."""
    return weights_dir / WEIGHTS_SUBDIR / f"{model}.onnx"


def rembg_files(model: str) -> list[Path]:
    """The places rembg itself reads ``model`` from, in its order (per-model folder, legacy flat folder)."""
    fname = f"{model}.onnx"
    return [rembg_home() / "models" / model / fname, _legacy_home() / fname]


def _weights_dir(weights_dir: str | os.PathLike[str] | None) -> Path | None:
    # Lookup only: a folder that does not exist is reported by the weights code, not here.
    path = weights_dir_setting(weights_dir)
    return path if path is not None and path.is_dir() else None


def find_matting_model(model: str = DEFAULT_MATTING_MODEL, *,
                       weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The model file already on disk for ``model``, or None (no download, no hashing).

    ``weights_dir`` (default ``IMESH_WEIGHTS_DIR``) first, as for the other weights,
    then where rembg looks.
    """
    wdir = _weights_dir(weights_dir)
    candidates = ([in_weights_dir(wdir, model)] if wdir is not None else []) + rembg_files(model)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def matting_model_path(model: str = DEFAULT_MATTING_MODEL) -> Path:
    """Where rembg reads ``model`` from: the existing file, else where it would download it.

    rembg looks in ``<home>/models/<name>/<name>.onnx`` then in the legacy flat
    ``$U2NET_HOME/<name>.onnx``; ``<home>`` is ``$U2NET_HOME`` when set.
    """
    return find_matting_model(model) or rembg_files(model)[0]


def download_command(model: str) -> str:
    """The command that fetches ``model`` (named in errors and by `imesh doctor`)."""
    return "imesh download" if model == DEFAULT_MATTING_MODEL else f"imesh download --matting {model}"


def _load_rembg():
    """rembg's session table and factory, its failure modes turned into one line."""
    from instantmesh_cli.images import rembg_sessions

    try:
        loaded = rembg_sessions.load()
    except ImportError as exc:
        raise ImeshError(
            f"background removal is unavailable: rembg or onnxruntime is not installed: {exc}",
            hint="pip install 'rembg[cpu]', or give an image with transparency and --no-rembg",
        ) from None
    from instantmesh_cli.quiet import quiet_pooch

    quiet_pooch()  # rembg downloads through pooch, which prints to stderr
    return loaded


def _download_url(session_class) -> str | None:
    """The URL rembg downloads a model from, read from its session class.

    rembg keeps each URL only inside ``download_models``; reading it there keeps the
    hint right for every model and every rembg version instead of a copied table.
    """
    import inspect

    try:
        source = inspect.getsource(session_class.download_models)
    except (OSError, TypeError):
        return None
    found = re.findall(r"https://[^\s\"']+\.onnx", source)
    return found[0] if len(found) == 1 else None


def _usable_session(cls) -> bool:
    name = cls.name()
    if name.endswith("_custom"):
        return False  # needs model_path=…, not reachable from a model name
    try:
        return bool(cls.is_local()) and not bool(cls.requires_credentials())
    except Exception:  # noqa: BLE001 - older rembg without these class methods: all local
        return True


class BackgroundRemover:
    """One rembg session, created on first use and reused for every image (and thread).

    ``model`` is a rembg session name (``DEFAULT_MATTING_MODEL`` = u2net). A session is
    always named explicitly: rembg's own default is bria-rmbg (non-commercial licence).
    The model file comes from ``weights_dir`` (default ``IMESH_WEIGHTS_DIR``:
    ``DIR/rembg/<name>.onnx``, as ``imesh download --to DIR`` writes it) when it is
    there, else from rembg's own home. With ``offline`` (default: ``HF_HUB_OFFLINE``
    is set) a missing model fails at once instead of trying github.com; otherwise
    rembg downloads it, reporting on stderr.
    """

    def __init__(self, model: str = DEFAULT_MATTING_MODEL, *, offline: bool | None = None,
                 weights_dir: str | os.PathLike[str] | None = None):
        self.model = model
        self.offline = is_offline(offline)
        self.weights_dir = weights_dir
        self._session = None
        self._lock = threading.Lock()

    @property
    def session(self):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._new_session()
        return self._session

    def _missing_hint(self, session_class) -> str:
        target = rembg_files(self.model)[0]
        url = _download_url(session_class) if session_class is not None else None
        where = f"put {target.name} in {target.parent} (or set U2NET_HOME to a folder holding it)"
        from instantmesh_cli.images.matting_pins import pinned

        if pinned(self.model) is not None:
            cmd = download_command(self.model)
            fetch = (f"run `{cmd}` with network (or `{cmd} --to DIR` on a connected machine and pass "
                     "--weights-dir DIR), or ")
        else:
            fetch = ""
        if url:
            return f"{fetch}download {url} and {where}"
        return f"{fetch}run `rembg d {self.model}` (pip install 'rembg[cli]') on a machine with network, or {where}"

    def _new_session(self):
        session_classes, new_session = _load_rembg()
        cls = session_classes.get(self.model)
        if cls is None:
            local = sorted(n for n, c in session_classes.items() if _usable_session(c))
            raise UsageError(f"unknown matting model {self.model!r}; choose one of: {', '.join(local)}")
        if not _usable_session(cls):
            raise UsageError(
                f"matting model {self.model!r} cannot be used here "
                "(it sends images to a remote service, needs credentials, or needs its own model_path)"
            )
        path = find_matting_model(self.model, weights_dir=self.weights_dir)
        wdir = _weights_dir(self.weights_dir)
        from_weights_dir = wdir is not None and path == in_weights_dir(wdir, self.model)
        if path is None and self.offline:
            raise WeightsError(f"rembg model {self.model!r} is not on this machine (offline mode)",
                               hint=self._missing_hint(cls))
        try:
            if from_weights_dir:
                from instantmesh_cli.images import rembg_sessions

                return rembg_sessions.from_file(cls, path)
            return new_session(self.model)
        except ImeshError:
            raise
        except Exception as exc:  # noqa: BLE001 - requests/pooch/onnxruntime errors, reported as one line
            path = find_matting_model(self.model, weights_dir=self.weights_dir)
            if path is None:
                raise WeightsError(
                    f"rembg model {self.model!r} is missing and could not be downloaded ({_reason(exc)[:100]})",
                    hint=self._missing_hint(cls),
                ) from None
            raise WeightsError(
                f"rembg model file {path} cannot be loaded ({_reason(exc)[:100]})",
                hint="run `imesh download --to DIR` again to replace it" if from_weights_dir
                else "delete it and run again to download it afresh",
            ) from None

    def mask(self, rgb: "Image") -> "Image":
        """The matte of ``rgb`` as an ``L`` image of the same size (255 = object)."""
        import numpy as np
        from PIL import ImageChops

        session = self.session
        rgb = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
        # rembg min-max normalises the prediction, dividing by zero on a featureless
        # picture; the resulting empty matte is reported as "no foreground" by the
        # caller. errstate is per thread, unlike warnings filters.
        with np.errstate(all="ignore"):
            masks = session.predict(rgb)
        if not masks:
            raise ImeshError(f"matting model {self.model!r} returned no matte")
        matte = None
        for m in masks:
            m = m if m.mode == "L" else m.convert("L")
            if m.size != rgb.size:
                m = m.resize(rgb.size)
            # Models with one matte per class (u2net_cloth_seg) give several: the object
            # is their union.
            matte = m if matte is None else ImageChops.lighter(matte, m)
        return matte

    def cutout(self, rgb: "Image") -> "Image":
        """``rgb`` with the matte as its alpha channel.

        The colours are kept as they are (straight alpha). rembg's default cut-out
        pastes the photo onto transparent black, which darkens every soft edge pixel
        and leaves a dark fringe once the cut-out is composited on white for Zero123++.
        """
        mask = self.mask(rgb)
        out = rgb.convert("RGBA")
        out.putalpha(mask)
        return out
