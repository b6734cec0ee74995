"""Zero123++ v1.2 multi-view generation (our pipeline over diffusers/transformers parts).

- ``pipeline.Zero123PlusPipeline``: condition image → 640x960 grid of six views;
- ``loading``: the components from a local folder in the released layout (no fetching);
- ``clip_vision``: our CLIP vision tower (the image embedding without importing transformers);
- ``diffusers_import``: diffusers' VAE / UNet classes, imported without transformers;
- ``reference_attention``: the write/read self-attention processors;
- ``schedulers``: euler-a (default, 75 steps), dpm++2m (25), unipc (20);
- ``grid``: ``split_grid`` / ``join_views`` and the camera of each tile;
- ``conditioning`` / ``scaling``: preprocessing and the v1.2 constants.

Importing this package imports nothing: each imesh process imports ``diffusers_import`` at start
(``startup.py``), the client of ``imesh serve`` too, which needs neither PIL (``grid``) nor torch.
"""
