"""Model weights: find, download, verify, export and convert the files of the registry.

Where a file comes from, in order:

1. ``--weights-dir DIR`` / ``IMESH_WEIGHTS_DIR``: ``DIR/<repo_id>/<filename>``, the
   layout ``imesh download --to DIR`` writes (for machines without network);
2. the huggingface_hub cache (so weights fetched by other tools are reused);
3. a download from the Hub into that cache through huggingface_hub's own
   ``hf_hub_download`` — unless offline (``--offline`` or ``HF_HUB_OFFLINE=1``), in
   which case a missing file is one clear error at once, naming the command that
   fetches it.

Every file is verified: its size and sha256 where the registry knows them, and
in any case the Hub's own content id (the ETag the cache names each blob after:
sha256 for LFS files, git blob sha1 for small text files). A corrupted cache copy
is removed and fetched again.

Modules, one job each: ``paths`` (where things live, locks), ``offline`` (when
the network may be used), ``verify`` (checking a copy), ``manifest`` (a weights
folder's record), ``locate`` (finding a copy without network), ``download`` (one
file through ``hf_hub_download``), ``fetch`` (the resolution order above),
``export`` (``imesh download --to``), ``folders`` (the Zero123++ folder view),
``convert`` (pickle → safetensors), ``probe`` (does the Hub answer?). File formats
are :mod:`instantmesh_cli.weights_format`.
"""

from __future__ import annotations

from instantmesh_cli.hub.convert import weights_file
from instantmesh_cli.hub.download import Progress
from instantmesh_cli.hub.errors import (CorruptWeightsError, DownloadInterruptedError, HubUnreachableError,
                                        MissingWeightsError)
from instantmesh_cli.hub.export import export_to_dir
from instantmesh_cli.hub.fetch import FetchResult, ensure, fetch
from instantmesh_cli.hub.folders import multiview_folder
from instantmesh_cli.hub.locate import locate, present
from instantmesh_cli.hub.manifest import MANIFEST_NAME, declare_revisions, declared_revisions
from instantmesh_cli.hub.offline import download_command, is_offline
from instantmesh_cli.hub.paths import cache_dir, hub_timeout, resolve_weights_dir
from instantmesh_cli.hub.probe import HubStatus, probe_hub
from instantmesh_cli.weights_format import load_state_dict

__all__ = [
    "MANIFEST_NAME",
    "CorruptWeightsError",
    "DownloadInterruptedError",
    "FetchResult",
    "HubStatus",
    "HubUnreachableError",
    "MissingWeightsError",
    "Progress",
    "cache_dir",
    "declare_revisions",
    "declared_revisions",
    "download_command",
    "ensure",
    "export_to_dir",
    "fetch",
    "hub_timeout",
    "is_offline",
    "load_state_dict",
    "locate",
    "multiview_folder",
    "present",
    "probe_hub",
    "resolve_weights_dir",
    "weights_file",
]
