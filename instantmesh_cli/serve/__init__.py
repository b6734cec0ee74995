"""``imesh serve``: warm workers behind a job queue and an HTTP API, and the client ``imesh generate`` uses.

- ``address``: where a server listens (the per-user unix socket by default), URLs, the socket itself;
- ``fields``: the API's option fields, named as ``imesh generate``'s flags, mapped onto
  :class:`~instantmesh_cli.chain.options.PipelineOptions` by the command line's own function;
- ``jobs``: the server's job table over a :class:`~instantmesh_cli.chain.workers.WorkerPool`
  (progress, results folder, TTL, cancel, metrics, drain);
- ``app``: the FastAPI routes (``/v1``), auth and limits;
- ``server``: start the pool, listen, drain on SIGTERM;
- ``client``: the small HTTP client and the batch runner ``imesh generate`` uses when a server is up.

Nothing here imports torch at import time; the server process never touches a GPU itself.
"""
