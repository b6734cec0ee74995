"""One line of ``imesh doctor``'s report, and what every check module shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def import_torch():
    """(torch, None), or (None, the one-line reason it does not import): a check reports a broken torch, never raises it."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken CUDA library at import
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return torch, None
