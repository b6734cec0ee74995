"""PLY header comments: the generator and the provenance, in place of trimesh's own comment."""

from __future__ import annotations

_END = b"end_header"


def with_comments(ply: bytes, comments: list[str]) -> bytes:
    """``ply`` with its header's ``comment`` lines replaced by ``comments`` (placed after ``format``).

    Each comment must be one line of ASCII. Readers find the end of the header by looking for
    ``end_header`` in each line, some anywhere in the line, so a comment may not contain it.
    """
    end = ply.find(_END + b"\n")
    if not ply.startswith(b"ply\n") or end < 0:
        raise ValueError("not a PLY file with a newline-terminated ASCII header")
    lines = ply[:end].split(b"\n")[:-1]  # the header lines before end_header
    rest = ply[end:]
    kept = [line for line in lines if not line.startswith((b"comment ", b"comment\t")) and line != b"comment"]
    fmt = next(i for i, line in enumerate(kept) if line.startswith(b"format "))
    new = []
    for text in comments:
        raw = text.encode("ascii")
        if b"\n" in raw or b"\r" in raw or _END in raw:
            raise ValueError(f"PLY comment may not contain a line break or {_END.decode()!r}: {text!r}")
        new.append(b"comment " + raw)
    return b"\n".join([*kept[: fmt + 1], *new, *kept[fmt + 1 :]]) + b"\n" + rest


def json_for_comment(text: str) -> str:
    """JSON text with every ``end_header`` spelled ``end\\u005fheader``: the same JSON value.

    Only the underscore is escaped, and an underscore is never part of a JSON escape, so this
    is safe anywhere in ASCII JSON text.
    """
    return text.replace("end_header", "end\\u005fheader")
