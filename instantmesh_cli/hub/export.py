"""``imesh download --to DIR``: verified copies at ``DIR/<repo_id>/<filename>`` plus a manifest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from instantmesh_cli.hub.download import Progress, download, remote_metadata
from instantmesh_cli.hub.fetch import FetchResult
from instantmesh_cli.hub.locate import blob_etag, cached, in_weights_dir
from instantmesh_cli.hub.manifest import manifest_entry, record
from instantmesh_cli.hub.offline import is_offline, missing_offline
from instantmesh_cli.hub.verify import problem
from instantmesh_cli.settings import HubFile


def export_to_dir(hub_file: HubFile, target_dir: str | os.PathLike[str], *,
                  offline: bool | None = None, progress: Progress | None = None) -> FetchResult:
    """Put a verified copy of ``hub_file`` at ``target_dir/<repo_id>/<filename>``.

    A copy already there is checked (and replaced if bad); otherwise it is copied
    from a good cache copy, or downloaded straight into ``target_dir`` (no second
    copy in the cache). ``target_dir/imesh-manifest.json`` records revision, size
    and sha256 so that later runs can verify the folder offline.
    """
    target_dir = Path(target_dir).expanduser()
    dest = in_weights_dir(hub_file, target_dir)
    source_copy = cached(hub_file)
    if source_copy is not None and problem(source_copy, hub_file, etag=blob_etag(source_copy)) is not None:
        source_copy = None  # a bad cache copy is no source (fetch() repairs the cache itself)
    status = "ok"
    if dest.is_file():
        entry = manifest_entry(target_dir, hub_file) or {}
        etag = entry.get("sha256") or (blob_etag(source_copy) if source_copy is not None else None)
        if not etag and not hub_file.sha256 and not is_offline(offline):
            etag = remote_metadata(hub_file).etag  # nothing here to verify against: ask the Hub
        if not etag and not hub_file.sha256:
            raise missing_offline(hub_file, f"in {target_dir} cannot be verified")
        if problem(dest, hub_file, etag=etag, expected_size=entry.get("size")) is None:
            record(target_dir, hub_file, dest)
            return FetchResult(dest, "ok", "dir")
        dest.unlink()
        status = "repaired"
    if source_copy is not None:
        tmp = dest.with_name(dest.name + ".incomplete")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_copy, tmp)
        os.replace(tmp, dest)
        source = "cache"
    else:
        if is_offline(offline):
            raise missing_offline(hub_file, "is not on this machine")
        # local_dir is the repo's folder so that the file lands at DIR/<repo_id>/<filename>;
        # huggingface_hub keeps its own bookkeeping in DIR/<repo_id>/.cache/huggingface/.
        download(hub_file, local_dir=target_dir / hub_file.repo_id, progress=progress)
        source = "hub"
    record(target_dir, hub_file, dest)
    if status == "ok":
        status = "downloaded" if source == "hub" else "copied"
    return FetchResult(dest, status, source)
