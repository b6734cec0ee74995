"""What imesh's own processes set up before any library is imported: the CLI and its worker processes.

Each step saves part of a cold start and changes nothing a run computes: bytecode for
read-only installs (``bytecode``), no peft (``lean_imports``), one cached scan of the
installed distributions (``metadata_cache``), and a lean import of diffusers' two model classes
(``multiview.diffusers_import``). A program that imports imesh as a library
gets none of them.
"""

from __future__ import annotations


def prepare_process() -> None:
    from instantmesh_cli.bytecode import redirect_bytecode_if_needed

    redirect_bytecode_if_needed()  # first: what is imported after it gets cached bytecode too

    from instantmesh_cli import metadata_cache
    from instantmesh_cli.lean_imports import skip_unused_optional_packages
    from instantmesh_cli.multiview.diffusers_import import use_lean_import

    skip_unused_optional_packages()
    metadata_cache.install()
    use_lean_import()
