"""The weight errors a caller may want to tell apart (all are one-line :class:`WeightsError`)."""

from __future__ import annotations

from instantmesh_cli.errors import WeightsError


class MissingWeightsError(WeightsError):
    """A file is not on this machine and cannot be fetched (offline, not on the Hub…)."""


class HubUnreachableError(MissingWeightsError):
    """The Hub could not be contacted, or a download broke off (no network, DNS failure, timeout)."""


class CorruptWeightsError(WeightsError):
    """A copy failed verification (size / sha256) and could not be replaced."""


class DownloadInterruptedError(HubUnreachableError):
    """The Hub answered, but a transfer kept breaking off until huggingface_hub's retries ran out."""
