"""Imports every command module so that each registers itself on the app.

One line per command keeps the list easy to see, in the order ``imesh --help`` lists
them; each module imports its heavy libraries inside the command function, so
``imesh --help`` stays fast.
"""

from instantmesh_cli.cli import app as _app  # noqa: F401
from instantmesh_cli.cli import generate  # noqa: F401
from instantmesh_cli.cli import multiview  # noqa: F401
from instantmesh_cli.cli import reconstruct  # noqa: F401
from instantmesh_cli.cli import prepare  # noqa: F401
from instantmesh_cli.cli import download  # noqa: F401
from instantmesh_cli.cli import selftest  # noqa: F401
from instantmesh_cli.cli import doctor  # noqa: F401
from instantmesh_cli.cli import bench  # noqa: F401
from instantmesh_cli.cli import preview  # noqa: F401
from instantmesh_cli.cli import serve  # noqa: F401
