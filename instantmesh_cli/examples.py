"""The example photo that ships inside the package (``assets/example.png``, Apache-2.0, see assets/README.md)."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_NAME = "example.png"


def example_photo() -> Path:
    """The bundled photo's path: a rubber duck with real transparency (so no matting model is needed)."""
    from importlib.resources import files

    from instantmesh_cli.errors import ImeshError

    resource = files("instantmesh_cli") / "assets" / EXAMPLE_NAME
    path = Path(str(resource))
    if not path.is_file():
        # Only a broken install (assets left out of the wheel, or a zipped package) lands here.
        raise ImeshError(f"the bundled example photo is missing ({path}); reinstall imesh")
    return path
