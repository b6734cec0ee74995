"""Offline rules: when imesh may use the network, and the one-line error when it may not."""

from __future__ import annotations

from instantmesh_cli import settings
from instantmesh_cli.hub.errors import MissingWeightsError
from instantmesh_cli.settings import HubFile, is_offline  # noqa: F401 - the hub's callers ask for it here


def download_command(hub_file: HubFile) -> str:
    """The command that fetches ``hub_file`` (named in offline errors)."""
    owners = [name for name in settings.VARIANTS
              if any(f.repo_id == hub_file.repo_id and f.filename == hub_file.filename
                     for f in settings.model_files(name))]
    model = settings.DEFAULT_VARIANT if not owners or settings.DEFAULT_VARIANT in owners else owners[0]
    return f"imesh download --model {model}"


def missing_offline(hub_file: HubFile, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{hub_file} ({hub_file.revision[:12]}) {why} and offline mode is on",
        hint=f"run `{download_command(hub_file)}` with network, or `imesh download --to DIR` "
        "on a connected machine and pass --weights-dir DIR here",
    )
