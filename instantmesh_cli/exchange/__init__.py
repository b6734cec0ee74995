"""File-format writers for the exported mesh: GLB container, PNG texture, OBJ/MTL text, PLY header.

They take arrays already in the exported frame (see :mod:`instantmesh_cli.export`, which
owns the frame, colours and geometry) and return bytes or text. Every writer is
deterministic: the same input gives the same bytes in any process, so outputs are
reproducible and carry nothing time- or machine-dependent beyond what the caller puts in
the provenance.
"""
