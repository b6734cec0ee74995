"""The API's option fields: ``imesh generate``'s flags by the same names, with the same defaults.

Nothing is declared twice: the fields are read off the ``generate`` command's own parameters
(their Python names with ``-`` for ``_``, which are the long flag names) and their values go
through :func:`instantmesh_cli.cli.options.pipeline_options`, the function the command line
uses. A test checks every field against ``imesh generate --help``.

Options that choose the models (``model``, ``dtype``, ``device``) must agree with what the
workers loaded; the ones that only the server's start decides (``--low-vram``, ``--compile``,
``--offline``, ``--weights-dir``: a client never names a path on the server) are refused by name.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from instantmesh_cli.chain.models import LOAD_FIELDS
from instantmesh_cli.chain.options import PipelineOptions

# generate's Python parameter → field name, where the two differ (``--format`` is ``fmt`` in Python).
_RENAMED = {"fmt": "format"}
# Set when the server starts; a job cannot change them.
SERVER_OWNED = {
    "low-vram": "--low-vram",
    "compile": "--compile",
    "offline": "--offline",
    "weights-dir": "--weights-dir",
}
# Fields that are not options: how the job and its files are named.
NAME_FIELDS = ("name", "stem")
# generate flags about local files and the local run; a server job has no use for them.
_NOT_FIELDS = {"inputs", "output", "recursive", "from_list", "skip_existing", "json_lines", "quiet", "gpus", "workers",
               "overlap", "server", "no_server", "ctx"}
# generate's --save-views / --save-cutout by the same names, but on by default here: the web page
# and API clients fetch a job's views and cut-out after it finished, so a job keeps both unless it
# says not to. imesh generate sends false for the ones its own flags did not ask for, which spares
# the job their PNG encoding (0.15 s for a noisy 960x640 views grid on the 2-core dev VM).
KEEP_FIELDS = {"save-views": True, "save-cutout": True}


class FieldError(ValueError):
    """A bad field, as one line; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Field:
    name: str  # as sent: "texture-size"
    param: str  # generate's Python parameter: "texture_size"
    kind: Any  # the annotated type: int, Optional[int], Literal[...], bool
    default: Any
    help: str = ""  # the flag's own help text
    minimum: float | None = None
    maximum: float | None = None


@functools.lru_cache(maxsize=1)
def fields() -> dict[str, Field]:
    """Every field the API takes, by name, in generate's order."""
    from instantmesh_cli.cli.generate import generate
    from instantmesh_cli.cli.options import pipeline_options

    targets = set(inspect.signature(pipeline_options).parameters) | set(_RENAMED)
    out = {}
    for name, p in inspect.signature(generate, eval_str=True).parameters.items():
        if name in _NOT_FIELDS or name not in targets:
            continue
        info = None
        kind = p.annotation
        if typing.get_origin(p.annotation) is typing.Annotated:
            kind, *meta = typing.get_args(p.annotation)
            info = next((m for m in meta if hasattr(m, "help")), None)
        field = Field(_RENAMED.get(name, name).replace("_", "-"), name, kind, p.default,
                      help=getattr(info, "help", None) or "", minimum=getattr(info, "min", None),
                      maximum=getattr(info, "max", None))
        out[field.name] = field
    return out


_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def describe() -> list[dict[str, Any]]:
    """The fields a job may set, for clients that build a form (the web page): name, JSON type, default,
    whether empty means "the default", choices, bounds and generate's help text. Server-owned ones are left out."""
    out = []
    for f in fields().values():
        if f.name in SERVER_OWNED:
            continue
        args = typing.get_args(f.kind)
        nullable = type(None) in args
        base = next(a for a in args if a is not type(None)) if nullable else f.kind
        choices = list(typing.get_args(base)) if typing.get_origin(base) is typing.Literal else None
        out.append({
            "name": f.name, "type": "string" if choices else _JSON_TYPES.get(base, "string"), "default": f.default,
            "nullable": nullable, "choices": choices, "minimum": f.minimum, "maximum": f.maximum, "help": f.help,
        })
    return out


def _parse(field: Field, value: Any) -> Any:
    from pydantic import TypeAdapter, ValidationError

    if isinstance(value, str) and value.strip().lower() in ("", "none", "null") and type(None) in typing.get_args(field.kind):
        return None
    try:
        return TypeAdapter(field.kind).validate_python(value.strip() if isinstance(value, str) else value)
    except ValidationError as exc:
        first = exc.errors()[0]
        expected = first.get("msg", "invalid value").replace("Input should be ", "expected ")
        raise FieldError(f"{field.name}={value!r}: {expected}") from None


@dataclass(frozen=True)
class JobFields:
    """One submitted job's fields, checked: its options, mesh format, naming and the files it keeps."""

    options: PipelineOptions
    fmt: str = "glb"
    name: str | None = None
    stem: str | None = None
    save_views: bool = KEEP_FIELDS["save-views"]
    save_cutout: bool = KEEP_FIELDS["save-cutout"]


def parse_fields(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Field names and values as sent (strings from a form or a query, or JSON values) → (generate's keyword
    arguments, the naming and keep fields by name). Unknown, repeated-under-two-spellings and server-owned
    names are refused."""
    table = fields()
    kwargs: dict[str, Any] = {}
    names: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in raw.items():
        name = key.strip().lower().replace("_", "-")
        if name in NAME_FIELDS:
            names[name] = str(value)
            continue
        if name in KEEP_FIELDS:
            names[name] = _parse(Field(name, name, bool, KEEP_FIELDS[name]), value)
            continue
        negated = False
        if name not in table and name.startswith("no-") and name[3:] in table and table[name[3:]].kind is bool:
            name, negated = name[3:], True  # no-texture=true, as the --no-texture flag
        if name in SERVER_OWNED:
            raise FieldError(f"{key} is chosen when the server starts (imesh serve {SERVER_OWNED[name]}), not per job")
        if name not in table:
            offered = [n for n in table if n not in SERVER_OWNED]
            raise FieldError(f"unknown option {key!r}; the options are: {', '.join(offered)}, "
                             f"{', '.join(KEEP_FIELDS)}, {', '.join(NAME_FIELDS)}")
        if name in seen:
            raise FieldError(f"{key} given twice (also as {seen[name]!r})")
        seen[name] = key
        parsed = _parse(table[name], value)
        kwargs[table[name].param] = (not parsed) if negated else parsed
    return kwargs, names


def job_options(raw: Mapping[str, Any], server: PipelineOptions, *, device_type: str) -> JobFields:
    """Fields → the job's checked options, its mesh format, naming and the files it keeps.

    Load options come from ``server``; a field that asks for other models is a 409 naming the server's.
    """
    from instantmesh_cli.cli.options import pipeline_options
    from instantmesh_cli.errors import ImeshError

    kwargs, names = parse_fields(raw)
    fmt = kwargs.pop("fmt", None) or "glb"
    model = kwargs.pop("model", server.model)
    if model != server.model:
        raise FieldError(f"this server's workers loaded {server.model}, not {model}; "
                         f"start one with imesh serve --model {model}", 409)
    device = kwargs.pop("device", "auto")
    if device != "auto" and device.split(":")[0] != device_type:
        raise FieldError(f"this server's workers run on {device_type}, not {device}", 409)
    dtype = kwargs.pop("dtype", "auto")
    theirs = effective_dtype(server.dtype, device_type)
    if effective_dtype(dtype, device_type) != theirs:
        raise FieldError(f"this server's workers compute in {theirs}, not {dtype}; start one with imesh serve --dtype {dtype}", 409)
    try:
        options = pipeline_options(**kwargs)
    except ImeshError as exc:
        raise FieldError(str(exc).replace("--", "")) from None
    options = options.replace(**{f: getattr(server, f) for f in LOAD_FIELDS})  # the workers' models run the job
    keep = {name.replace("-", "_"): value for name, value in names.items() if name in KEEP_FIELDS}
    return JobFields(options, fmt, names.get("name"), names.get("stem"), **keep)  # unsent ones: JobFields' defaults


def effective_dtype(name: str | None, device_type: str) -> str:
    """The precision a worker on ``device_type`` computes in for ``--dtype name`` (auto: fp16 on CUDA, fp32
    elsewhere), by name: no GPU is asked, so the server process never opens a CUDA context of its own."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return "fp16" if device_type == "cuda" else "fp32"
    if name == "fp16" and device_type == "cpu":
        raise FieldError("dtype fp16 is not supported on the CPU; use fp32 or bf16", 409)
    return name


def fields_from_params(params: Mapping[str, Any]) -> dict[str, str]:
    """generate's parameter values (``ctx.params``) → the fields a client sends (what it set, as text).

    Server-owned options are left out: the client checks them against the server's health first.
    The keep fields are always sent, so the job keeps only the files this client will write.
    """
    out = {}
    for field in fields().values():
        if field.name in SERVER_OWNED or field.param not in params:
            continue
        value = params[field.param]
        if value is None:
            continue
        out[field.name] = str(value).lower() if isinstance(value, bool) else str(value)
    for name in KEEP_FIELDS:
        out[name] = str(bool(params.get(name.replace("-", "_")))).lower()
    return out
