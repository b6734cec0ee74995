"""Does the Hub answer? One metadata request with a bounded wait, for ``imesh doctor``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from instantmesh_cli import settings
from instantmesh_cli.hub.download import first_line, translate
from instantmesh_cli.hub.paths import hub_timeout
from instantmesh_cli.settings import HubFile


@dataclass(frozen=True)
class HubStatus:
    endpoint: str
    file: HubFile  # what was asked for
    answered: bool  # the server replied at all (any HTTP status)
    has_file: bool  # ...and serves the probed file at its pinned revision
    seconds: float
    detail: str  # one line: what happened


def probe_file() -> HubFile:
    """The probed file: small, and one that every run needs, at its pinned revision."""
    return settings.hub_file(settings.ZERO123PLUS_REPO, "model_index.json")


def probe_hub(*, endpoint: str | None = None, timeout: float | None = None) -> HubStatus:
    """Ask the Hub (default ``HF_ENDPOINT``) for :func:`probe_file`; wait at most ``timeout`` (``IMESH_HUB_TIMEOUT``)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub import errors as hf

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    timeout = hub_timeout() if timeout is None else timeout
    f = probe_file()
    url = hf_hub_url(f.repo_id, f.filename, revision=f.revision, endpoint=endpoint)
    start = time.perf_counter()
    try:
        get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding here
        seconds = time.perf_counter() - start
        if isinstance(exc, hf.HfHubHTTPError):  # it answered, but not with the file
            err = translate(exc, f, transferring=False)
            return HubStatus(endpoint, f, True, False, seconds, err.message if err else first_line(exc))
        # (ConnectError: refused / DNS; ReadTimeout: accepted but silent; …)
        return HubStatus(endpoint, f, False, False, seconds, f"no answer after {seconds:.1f} s ({first_line(exc)})")
    seconds = time.perf_counter() - start
    return HubStatus(endpoint, f, True, True, seconds, f"answered in {seconds:.2f} s")
