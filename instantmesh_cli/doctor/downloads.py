"""``imesh doctor``'s checks of what jobs fetch or read: onnxruntime and the matting model, the Hub, the weights."""

from __future__ import annotations

import importlib.util
import os

from instantmesh_cli.doctor.check import FAIL, OK, WARN, Check


def check_onnxruntime() -> Check:
    if importlib.util.find_spec("onnxruntime") is None:
        return Check("onnxruntime", FAIL, "not installed: background removal (rembg) cannot run",
                     'pip install "rembg[cpu]" (or onnxruntime-gpu)')
    try:
        import onnxruntime
    except Exception as exc:  # noqa: BLE001
        return Check("onnxruntime", FAIL, f"does not import ({type(exc).__name__}: {exc})".splitlines()[0],
                     "reinstall onnxruntime")
    providers = ", ".join(p.replace("ExecutionProvider", "") for p in onnxruntime.get_available_providers())
    return Check("onnxruntime", OK, f"onnxruntime {onnxruntime.__version__} ({providers})")


def check_rembg_model(weights_dir: str | os.PathLike[str] | None = None) -> Check:
    """The default matting model: present and matching rembg's pinned md5 (hashing it: well under a second)."""
    from instantmesh_cli.images.matting import (DEFAULT_MATTING_MODEL, download_command, find_matting_model,
                                                matting_model_path, rembg_files)
    from instantmesh_cli.images.matting_download import problem
    from instantmesh_cli.images.matting_pins import MIRROR_ENV, PINNED_FROM_REMBG, pinned

    model = DEFAULT_MATTING_MODEL
    fetch = download_command(model)
    found = find_matting_model(model, weights_dir=weights_dir)
    if found is None:
        return Check("rembg model", WARN, f"{model} is not downloaded yet: the first photo without transparency "
                     "needs it (rembg then fetches it from github.com unless offline); images with real alpha "
                     "do not", f"run `{fetch}` (a mirror: {MIRROR_ENV}), or `{fetch} --to DIR` on a connected "
                     f"machine and pass --weights-dir DIR, or copy {model}.onnx to {matting_model_path(model)}")
    pin = pinned(model)
    if pin is None:  # a default that imesh does not pin: present is all that can be said
        return Check("rembg model", OK, f"{model} at {found}")
    why = problem(found, pin.md5, pin.size)
    if why is not None:
        # Not one of rembg's own places: the weights folder's DIR/rembg/<name>.onnx.
        fix = (f"run `{fetch}`: it replaces it with a verified copy" if found in rembg_files(model)
               else f"run `{fetch} --to {found.parent.parent}` again to replace it")
        return Check("rembg model", FAIL, f"{model} at {found} is corrupt ({why})", fix)
    return Check("rembg model", OK, f"{model} at {found} (md5 matches rembg {PINNED_FROM_REMBG}'s pin)")


# ------------------------------------------------------------------------- hub
def check_hub(endpoint: str | None = None) -> Check:
    """Whether the Hub answers (one request, at most ``IMESH_HUB_TIMEOUT`` seconds)."""
    from instantmesh_cli import hub, settings

    if hub.is_offline():
        return Check("hub", OK, "not contacted: offline mode is on (HF_HUB_OFFLINE)")
    status = hub.probe_hub(endpoint=endpoint)
    if status.has_file:
        return Check("hub", OK, f"{status.endpoint} {status.detail}")
    # A warning, not a failure: cached weights and --weights-dir work without the Hub.
    if status.answered:
        return Check("hub", WARN, f"{status.endpoint} answers, but: {status.detail}",
                     f"check HF_ENDPOINT, and {settings.revision_env_var(status.file.repo_id)} if it is set")
    return Check("hub", WARN, f"{status.endpoint}: {status.detail}; files not on this machine cannot be "
                 "downloaded", "check the network / proxy and HF_ENDPOINT (IMESH_HUB_TIMEOUT sets the wait); "
                 "without network use --offline with --weights-dir DIR from `imesh download --to DIR`")


def check_hf_xet() -> Check:
    """hf_xet is huggingface_hub's fast path for Xet-stored files (the large weights)."""
    from importlib.metadata import PackageNotFoundError, version

    fallback = "large files download over plain HTTP instead (slower, no chunk de-duplication)"
    try:
        found = version("hf_xet")
    except PackageNotFoundError:
        return Check("hf_xet", WARN, f"not installed: {fallback}", 'pip install "huggingface_hub[hf_xet]"')
    if os.environ.get("HF_HUB_DISABLE_XET", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return Check("hf_xet", WARN, f"hf_xet {found} installed but disabled by HF_HUB_DISABLE_XET: {fallback}",
                     "unset HF_HUB_DISABLE_XET")
    return Check("hf_xet", OK, f"hf_xet {found}: Xet-stored files download through it")


# ---------------------------------------------------------------------- weights
def check_weights(weights_dir: str | os.PathLike[str] | None = None) -> list[Check]:
    from instantmesh_cli import hub, settings
    from instantmesh_cli.errors import WeightsError

    try:
        wdir = hub.resolve_weights_dir(weights_dir)
    except WeightsError as exc:
        return [Check("weights dir", FAIL, exc.message, exc.hint or "")]
    checks: list[Check] = []
    revisions = hub.declared_revisions(wdir)
    if wdir is not None:
        own = f" (holds its own revisions: {', '.join(sorted(set(revisions.values())))})" if revisions else ""
        checks.append(Check("weights dir", OK, f"{wdir}{own}"))
    offline = hub.is_offline()
    when = ("offline mode is on, so runs that need them fail" if offline
            else "they are downloaded on first use")

    def line(label: str, files: list, fix: str, needed: bool) -> Check:
        found = hub.present(files, weights_dir=wdir)
        missing = [f for f, p in found.items() if p is None]
        if not missing:
            return Check(label, OK, f"{len(files)} file(s) present")
        names = ", ".join(f.filename for f in missing[:3]) + (" …" if len(missing) > 3 else "")
        what = "not downloaded" if len(missing) == len(files) else f"{len(missing)} of {len(files)} missing"
        return Check(label, FAIL if offline and needed else WARN, f"{what} ({names}); {when}", fix)

    # Files every variant needs (Zero123++ pipeline, white-background UNet, DINO config),
    # then each variant's own reconstruction checkpoint.
    shared = [f for f in settings.model_files(settings.DEFAULT_VARIANT, revisions)
              if f.filename != settings.get_variant(settings.DEFAULT_VARIANT).checkpoint
              or f.repo_id != settings.INSTANTMESH_REPO]
    checks.append(line("weights shared", shared, f"imesh download --model {settings.DEFAULT_VARIANT}", True))
    for name, variant in settings.VARIANTS.items():
        ckpt = [f for f in settings.lrm_files(name, revisions) if f.filename == variant.checkpoint]
        checks.append(line(f"weights {name}", ckpt, f"imesh download --model {name}",
                           name == settings.DEFAULT_VARIANT))
    return checks
