"""The reconstruction model: released key layout, numerics of its parts, loading, mesh extraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lrm_fixtures as fx
from instantmesh_cli import settings
from instantmesh_cli.errors import WeightsError
from instantmesh_cli.mesh import Mesh, signed_volume
from instantmesh_cli.chain.models import load_reconstruction_model
from instantmesh_cli.reconstruction import cameras, config, loading, surface
from instantmesh_cli.reconstruction.encoder import Embeddings, ModulatedLayer
from instantmesh_cli.reconstruction.model import ReconstructionModel
from instantmesh_cli.reconstruction.transformer import CrossAttention, SelfAttention

RELEASED = {
    "instant-mesh-large": (config.INSTANT_MESH_LARGE, 519, 378_657_644),
    "instant-mesh-base": (config.INSTANT_MESH_BASE, 455, 313_352_516),
    "instant-nerf-large": (config.INSTANT_NERF_LARGE, 495, 378_477_332),
    "instant-nerf-base": (config.INSTANT_NERF_BASE, 431, 313_249_004),
}


def released_layout(layers: int, c: int, kind: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the released checkpoints after stripping ``lrm_generator.``,
    written out from the table in reference/instantmesh.md §3 (independent of the model code)."""
    out: dict[str, tuple[int, ...]] = {
        "encoder.model.embeddings.cls_token": (1, 1, 768),
        "encoder.model.embeddings.position_embeddings": (1, 197, 768),
        "encoder.model.embeddings.patch_embeddings.projection.weight": (768, 3, 16, 16),
        "encoder.model.embeddings.patch_embeddings.projection.bias": (768,),
        "encoder.model.layernorm.weight": (768,),
        "encoder.model.layernorm.bias": (768,),
        "encoder.camera_embedder.0.weight": (768, 16),
        "encoder.camera_embedder.0.bias": (768,),
        "encoder.camera_embedder.2.weight": (768, 768),
        "encoder.camera_embedder.2.bias": (768,),
        "transformer.pos_embed": (1, 3072, 1024),
        "transformer.norm.weight": (1024,),
        "transformer.norm.bias": (1024,),
        "transformer.deconv.weight": (1024, c, 2, 2),
        "transformer.deconv.bias": (c,),
    }
    for j in range(12):
        p = f"encoder.model.encoder.layer.{j}."
        for name in ("query", "key", "value"):
            out[p + f"attention.attention.{name}.weight"] = (768, 768)
            out[p + f"attention.attention.{name}.bias"] = (768,)
        out[p + "attention.output.dense.weight"] = (768, 768)
        out[p + "attention.output.dense.bias"] = (768,)
        out[p + "intermediate.dense.weight"] = (3072, 768)
        out[p + "intermediate.dense.bias"] = (3072,)
        out[p + "output.dense.weight"] = (768, 3072)
        out[p + "output.dense.bias"] = (768,)
        for ln in ("layernorm_before", "layernorm_after"):
            out[p + f"{ln}.weight"] = (768,)
            out[p + f"{ln}.bias"] = (768,)
        out[p + "adaLN_modulation.1.weight"] = (3072, 768)
        out[p + "adaLN_modulation.1.bias"] = (3072,)
    for i in range(layers):
        p = f"transformer.layers.{i}."
        for n in ("norm1", "norm2", "norm3"):
            out[p + f"{n}.weight"] = (1024,)
            out[p + f"{n}.bias"] = (1024,)
        out[p + "cross_attn.q_proj_weight"] = (1024, 1024)
        out[p + "cross_attn.k_proj_weight"] = (1024, 768)
        out[p + "cross_attn.v_proj_weight"] = (1024, 768)
        out[p + "cross_attn.out_proj.weight"] = (1024, 1024)
        out[p + "self_attn.in_proj_weight"] = (3072, 1024)
        out[p + "self_attn.out_proj.weight"] = (1024, 1024)
        out[p + "mlp.0.weight"] = (4096, 1024)
        out[p + "mlp.0.bias"] = (4096,)
        out[p + "mlp.3.weight"] = (1024, 4096)
        out[p + "mlp.3.bias"] = (1024,)
    heads = {"net_sdf": (3 * c, 1), "net_rgb": (3 * c, 3), "net_deformation": (3 * c, 3), "net_weight": (24 * c, 21)}
    if kind == "nerf":
        heads = {"net": (3 * c, 4)}
    for head, (n_in, n_out) in heads.items():
        p = f"synthesizer.decoder.{head}."
        for idx, shape in ((0, (64, n_in)), (2, (64, 64)), (4, (64, 64)), (6, (n_out, 64))):
            out[p + f"{idx}.weight"] = shape
            out[p + f"{idx}.bias"] = (shape[0],)
    return out


@pytest.mark.parametrize("name", list(RELEASED))
def test_key_set_and_shapes_equal_released_layout(name):
    cfg, n_tensors, n_params = RELEASED[name]
    assert config.variant_config(name) == cfg and settings.get_variant(name).kind == cfg.kind
    model = loading.build_model(cfg, "meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(got) == n_tensors
    assert sum(math.prod(s) for s in got.values()) == n_params
    assert got == released_layout(cfg.transformer_layers, cfg.triplane_dim, cfg.kind)
    # no buffers: nothing outside the checkpoint is needed to run the model
    assert not list(model.buffers())


def test_layernorm_epsilons():
    model = loading.build_model(config.INSTANT_MESH_BASE, "meta")
    eps = {name: m.eps for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps["encoder.model.layernorm"] == 1e-12
    assert eps["encoder.model.encoder.layer.3.layernorm_before"] == 1e-12
    assert eps["encoder.model.encoder.layer.3.layernorm_after"] == 1e-12
    assert eps["transformer.layers.5.norm1"] == eps["transformer.layers.5.norm2"] == eps["transformer.layers.5.norm3"] == 1e-5
    assert eps["transformer.norm"] == 1e-6


def test_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    cross_ref = torch.nn.MultiheadAttention(32, 4, kdim=24, vdim=24, bias=False, batch_first=True).eval()
    self_ref = torch.nn.MultiheadAttention(32, 4, bias=False, batch_first=True).eval()
    cross, selfa = CrossAttention(32, 24, 4), SelfAttention(32, 4)
    # the very same parameter names: the official state dict loads strictly
    cross.load_state_dict({k: v for k, v in cross_ref.state_dict().items()}, strict=True)
    selfa.load_state_dict({k: v for k, v in self_ref.state_dict().items()}, strict=True)
    x, ctx = torch.randn(2, 7, 32), torch.randn(2, 11, 24)
    with torch.no_grad():
        torch.testing.assert_close(cross(x, ctx), cross_ref(x, ctx, ctx, need_weights=False)[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(selfa(x), self_ref(x, x, x, need_weights=False)[0], atol=1e-6, rtol=1e-5)


def _hf_vit_state(encoder_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our encoder.model keys → transformers 5.x ViTModel keys."""
    renames = {
        "attention.attention.query": "attention.q_proj",
        "attention.attention.key": "attention.k_proj",
        "attention.attention.value": "attention.v_proj",
        "attention.output.dense": "attention.o_proj",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
    }
    out = {}
    for key, value in encoder_state.items():
        if "adaLN" in key:
            continue
        new = key.replace("encoder.layer.", "layers.")
        for a, b in renames.items():
            new = new.replace(a, b)
        out[new] = value
    return out


def test_unmodulated_encoder_equals_standard_vit():
    """With zero AdaLN weights the encoder is a plain DINO ViT: compare with transformers' ViTModel."""
    from transformers import ViTConfig, ViTModel

    cfg = config.tiny_config(config.INSTANT_MESH_BASE)
    torch.manual_seed(0)
    model = ReconstructionModel(cfg).eval()
    state = fx.random_state(cfg, seed=1)
    for k in state:
        if "adaLN" in k:
            state[k].zero_()
    model.load_state_dict(state)
    e = cfg.encoder
    hf = ViTModel(
        ViTConfig(hidden_size=e.hidden_size, num_hidden_layers=e.num_layers, num_attention_heads=e.num_heads,
                  intermediate_size=e.intermediate_size, image_size=e.image_size, patch_size=e.patch_size,
                  layer_norm_eps=e.layer_norm_eps, hidden_act="gelu", qkv_bias=True),
        add_pooling_layer=False,
    ).eval()
    enc_state = {k[len("encoder.model."):]: v for k, v in state.items() if k.startswith("encoder.model.")}
    hf.load_state_dict(_hf_vit_state(enc_state), strict=True)
    images = torch.rand(1, 2, 3, 224, 224)  # 224: the position embeddings are used as they are
    cams = cameras.zero123plus_cameras(6)[None, :2]
    with torch.no_grad():
        ours = model.encoder(images, cams)
        ref = hf(pixel_values=images[0] * 2 - 1).last_hidden_state
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_modulated_layer_matches_written_out_formula():
    cfg = config.tiny_config(config.INSTANT_MESH_LARGE).encoder
    torch.manual_seed(0)
    layer = ModulatedLayer(cfg).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.2)
    x, cam = torch.randn(3, 5, cfg.hidden_size), torch.randn(3, cfg.hidden_size)
    d, h = cfg.hidden_size, cfg.num_heads
    with torch.no_grad():
        mod = layer.adaLN_modulation[1](F.silu(cam))
        shift_msa, scale_msa, shift_mlp, scale_mlp = mod[:, :d], mod[:, d : 2 * d], mod[:, 2 * d : 3 * d], mod[:, 3 * d :]
        a = F.layer_norm(x, (d,), layer.layernorm_before.weight, layer.layernorm_before.bias, 1e-12)
        a = a * (1 + scale_msa[:, None]) + shift_msa[:, None]
        att = layer.attention.attention
        q, k, v = (m(a).view(3, 5, h, -1).transpose(1, 2) for m in (att.query, att.key, att.value))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        y = x + layer.attention.output.dense((w @ v).transpose(1, 2).reshape(3, 5, d))
        b = F.layer_norm(y, (d,), layer.layernorm_after.weight, layer.layernorm_after.bias, 1e-12)
        b = b * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        expected = y + layer.output.dense(0.5 * layer.intermediate.dense(b) * (1 + torch.erf(layer.intermediate.dense(b) / math.sqrt(2))))
        torch.testing.assert_close(layer(x, cam), expected, atol=1e-5, rtol=1e-5)


def test_position_embeddings_resampled_with_dino_scale_factor():
    emb = Embeddings(config.EncoderConfig())  # the released ViT-B/16 sizes
    with torch.no_grad():
        emb.position_embeddings.normal_()
        got = emb.resampled_position_embeddings(320, 320)
        grid = emb.position_embeddings[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
        expected = F.interpolate(grid, scale_factor=(20.1 / 14, 20.1 / 14), mode="bicubic", align_corners=False)
        by_size = F.interpolate(grid, size=(20, 20), mode="bicubic", align_corners=False)
    assert got.shape == (1, 401, 768)
    torch.testing.assert_close(got[:, 0], emb.position_embeddings[:, 0])
    torch.testing.assert_close(got[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 400, 768))
    # the quirk matters: a size-based resize gives other embeddings
    assert (expected - by_size).abs().max() > 1e-3
    assert emb.resampled_position_embeddings(224, 224) is emb.position_embeddings
    # cached for inference until the weights change; never used while training
    with torch.no_grad():
        assert emb.resampled_position_embeddings(320, 320) is emb.resampled_position_embeddings(320, 320)
        emb.position_embeddings.mul_(2)
        torch.testing.assert_close(emb.resampled_position_embeddings(320, 320), got * 2)
    trained = emb.resampled_position_embeddings(320, 320)
    assert trained.requires_grad and trained is not emb.resampled_position_embeddings(320, 320)


def _tiny_model(base=config.INSTANT_MESH_LARGE, state_fn=fx.random_state, seed=0) -> ReconstructionModel:
    cfg = config.tiny_config(base)
    model = ReconstructionModel(cfg).eval()
    model.load_state_dict(state_fn(cfg, seed))
    return model.requires_grad_(False)


@pytest.mark.parametrize("views", [6, 4])
def test_forward_planes_shapes_and_batch_independence(views):
    model = _tiny_model()
    cfg = model.cfg
    torch.manual_seed(0)
    images = torch.rand(2, views, 3, cfg.input_size, cfg.input_size)
    cams = cameras.zero123plus_cameras(views)[None].expand(2, -1, -1)
    planes = model.forward_planes(images, cams)
    res = 2 * cfg.triplane_low_res
    assert planes.shape == (2, 3, cfg.triplane_dim, res, res) and planes.dtype == torch.float32
    torch.testing.assert_close(model.forward_planes(images[1:], cams[1:]), planes[1:], atol=1e-5, rtol=1e-5)
    # different views → different planes (the images reach the output)
    assert (planes[0] - planes[1]).abs().max() > 1e-3
    with pytest.raises(ValueError):
        model.forward_planes(images, cams[:, :2])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_planes_close_to_fp32(dtype):
    model = _tiny_model()
    cfg = model.cfg
    torch.manual_seed(0)
    images = torch.rand(1, 6, 3, cfg.input_size, cfg.input_size)
    cams = cameras.zero123plus_cameras(6)[None]
    ref = model.forward_planes(images, cams)
    model.compute_dtype = dtype
    low = model.forward_planes(images, cams)
    assert low.dtype == torch.float32
    rel = ((low - ref).norm() / ref.norm()).item()
    # bf16 keeps 8 mantissa bits, fp16 11: relative errors ~1e-2 / ~2e-3 after the whole network
    assert rel < (3e-2 if dtype == torch.bfloat16 else 5e-3), rel
    assert rel > 0  # autocast really ran in lower precision


def test_query_color_and_heads():
    model = _tiny_model()
    planes = torch.randn(2, 3, model.cfg.triplane_dim, 16, 16)
    pts = torch.rand(2, 50, 3) * 2 - 1
    rgb = model.query_color(planes, pts, chunk=7)
    assert rgb.shape == (2, 50, 3)
    feats = model.features(planes, pts)
    expected = torch.sigmoid(model.decoder.net_rgb(feats)) * 1.002 - 0.001
    torch.testing.assert_close(rgb, expected)
    assert model.color_head is model.decoder.net_rgb
    corner = torch.randn(4, 8 * feats.shape[-1])
    torch.testing.assert_close(model.decoder.cube_weights(corner), model.decoder.net_weight(corner) * 0.1)
    nerf = _tiny_model(config.INSTANT_NERF_BASE)
    planes_n = torch.randn(1, 3, 4, 16, 16)
    f = nerf.features(planes_n, pts[:1])
    raw = nerf.decoder.net(f)
    torch.testing.assert_close(nerf.decoder.density(f), F.softplus(raw[..., 0] - 1))
    torch.testing.assert_close(nerf.query_color(planes_n, pts[:1]), torch.sigmoid(raw[..., 1:]) * 1.002 - 0.001)


# ----------------------------------------------------------------------------- mesh extraction
def _octahedron_planes(model: ReconstructionModel) -> torch.Tensor:
    cfg = model.cfg
    images = torch.rand(1, 6, 3, cfg.input_size, cfg.input_size)
    return model.forward_planes(images, cameras.zero123plus_cameras(6)[None])


def _check_octahedron(mesh: Mesh, sdf_tol: float, extent_tol: float):
    import trimesh

    assert mesh.num_faces > 100
    v = torch.from_numpy(mesh.vertices).double()
    assert fx.octahedron_sdf(v).abs().max() < sdf_tol
    half = (mesh.vertices.max(0) - mesh.vertices.min(0)) / 2
    np.testing.assert_allclose(half, fx.SEMI_AXES, atol=extent_tol)
    np.testing.assert_allclose(mesh.vertices.max(0), -mesh.vertices.min(0), atol=1e-5)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent
    a, b, c = fx.SEMI_AXES
    assert signed_volume(mesh) == pytest.approx(4 / 3 * a * b * c, rel=0.15)  # outward faces
    expected = fx.expected_color(v).clamp(0, 1).numpy()
    np.testing.assert_allclose(mesh.vertex_colors, expected, atol=1e-5)


@pytest.mark.parametrize("base", [config.INSTANT_MESH_LARGE, config.INSTANT_MESH_BASE])
def test_flexicubes_mesh_of_designed_checkpoint(base):
    model = _tiny_model(base, fx.shape_state)
    mesh = model.extract_mesh(_octahedron_planes(model))
    assert mesh.metadata["extractor"] == "flexicubes" and not mesh.metadata["empty_shape_fallback"]
    # zero deformation and neutral weights: crossings of a piecewise-linear SDF lie on the surface
    _check_octahedron(mesh, sdf_tol=1e-4, extent_tol=2.1 / model.cfg.grid_res)


@pytest.mark.parametrize("base", [config.INSTANT_NERF_LARGE, config.INSTANT_NERF_BASE])
def test_marching_cubes_mesh_of_designed_checkpoint(base):
    model = _tiny_model(base, fx.shape_state)
    mesh = model.extract_mesh(_octahedron_planes(model))
    assert mesh.metadata["extractor"] == "marching_cubes"
    # density softplus(20 - 10 S) is not linear along cell edges: crossings are off by < 2% of S;
    # marching cubes clips the sharp tips by up to two cells
    _check_octahedron(mesh, sdf_tol=0.02, extent_tol=2 * 2.0 / (model.cfg.mesh_resolution - 1))


def test_surface_only_weights_and_deformation_give_the_full_evaluation_mesh():
    """The official code evaluates deformation at every vertex and weights at every cube; we evaluate
    both only where FlexiCubes reads them. Same planes → the same mesh."""
    from instantmesh_cli.reconstruction import flexicubes

    cfg = config.tiny_config(config.INSTANT_MESH_LARGE)
    state = fx.shape_state(cfg)
    gen = torch.Generator().manual_seed(3)
    for head in ("net_deformation", "net_weight"):  # make deformation and weights matter
        w = state[f"synthesizer.decoder.{head}.6.weight"]
        state[f"synthesizer.decoder.{head}.6.weight"] = torch.randn(w.shape, generator=gen) * 2.0
    model = ReconstructionModel(cfg).eval().requires_grad_(False)
    model.load_state_dict(state)
    planes = _octahedron_planes(model)
    mesh = model.extract_mesh(planes)

    grid = surface.flexicubes_grid(cfg.grid_res, cfg.grid_scale, planes.device)
    feats = model.features(planes, grid.vertices[None])[0]  # every vertex, as the official code
    sdf = model.decoder.net_sdf(feats).squeeze(-1)
    verts = grid.vertices + torch.tanh(model.decoder.net_deformation(feats)) / (cfg.grid_res * 4.0)
    corners = grid.all_cube_corners()
    weights = model.decoder.net_weight(feats[corners.reshape(-1)].reshape(corners.shape[0], -1)) * 0.1
    v, f = flexicubes.extract(grid, sdf, verts, weights=weights)
    assert mesh.num_faces == f.shape[0] > 100
    np.testing.assert_array_equal(mesh.faces, f.numpy())
    np.testing.assert_allclose(mesh.vertices, v.numpy(), atol=1e-6)
    # the random deformation moved the vertices off the plain octahedron
    assert fx.octahedron_sdf(torch.from_numpy(mesh.vertices)).abs().max() > 1e-3


def test_empty_shape_fallback_gives_a_surface():
    cfg = config.tiny_config(config.INSTANT_MESH_BASE)
    state = fx.shape_state(cfg)
    state["synthesizer.decoder.net_sdf.6.bias"].fill_(50.0)  # everything outside
    model = ReconstructionModel(cfg).eval().requires_grad_(False)
    model.load_state_dict(state)
    planes = _octahedron_planes(model)
    grid = surface.flexicubes_grid(cfg.grid_res, cfg.grid_scale, planes.device)
    raw = surface.grid_sdf(model, planes, grid)
    fixed, applied = surface.apply_empty_shape_fallback(raw, grid)
    assert applied and (raw > 0).all()
    boundary = grid.boundary_vertex_mask()
    assert torch.allclose(fixed[boundary], -1 - raw.max())
    assert fixed[grid.center_vertex_index] == pytest.approx(float(1 - raw.min()))
    keep = ~boundary
    keep[grid.center_vertex_index] = False
    assert torch.equal(fixed[keep], raw[keep])
    mesh = model.extract_mesh(planes)
    assert mesh.metadata["empty_shape_fallback"] and mesh.num_faces > 0
    ok, applied = surface.apply_empty_shape_fallback(torch.linspace(-1, 1, grid.n_vertices), grid)
    assert not applied


# ----------------------------------------------------------------------------- loading
def test_generator_state_dict_filters_like_the_official_loader():
    t = torch.zeros(1)
    raw = {"state_dict": {
        "lrm_generator.encoder.a": t, "lrm_generator.encoder.source_camera.b": t, "lpips.net.c": t, "other": t,
    }}
    assert list(loading.generator_state_dict(raw)) == ["encoder.a"]


def test_load_local_checkpoint_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    cfg = config.tiny_config(config.INSTANT_MESH_BASE)
    state = fx.random_state(cfg, seed=5)
    ckpt = fx.write_checkpoint(tmp_path / "instant_mesh_base.ckpt", state)
    st = tmp_path / "converted.safetensors"
    save_file({"lrm_generator." + k: v for k, v in state.items()} | {"lpips.x": torch.zeros(2)}, str(st))
    ref = ReconstructionModel(cfg).eval()
    ref.load_state_dict(state)
    images = torch.rand(1, 6, 3, cfg.input_size, cfg.input_size)
    cams = cameras.zero123plus_cameras(6)[None]
    expected = ref.forward_planes(images, cams)
    for path in (ckpt, st):
        model = loading.load_weights(cfg, path)
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert all(p.device.type == "cpu" for p in model.parameters())
        torch.testing.assert_close(model.forward_planes(images, cams), expected)
    for dtype in (torch.bfloat16, torch.float16):
        # matrix weights stored at the compute precision: the same planes as fp32 weights + autocast
        half = loading.load_weights(cfg, st, compute_dtype=dtype)
        assert half.transformer.layers[0].cross_attn.k_proj_weight.dtype == dtype
        assert half.encoder.model.encoder.layer[0].attention.attention.query.bias.dtype == dtype
        assert half.transformer.pos_embed.dtype == torch.float32  # embeddings, norms, heads stay fp32
        assert half.transformer.layers[0].norm1.weight.dtype == torch.float32
        assert half.encoder.model.embeddings.position_embeddings.dtype == torch.float32
        assert half.decoder.net_sdf[0].weight.dtype == torch.float32
        autocast_only = loading.load_weights(cfg, st, compute_dtype=dtype, weights_dtype=torch.float32)
        assert autocast_only.transformer.deconv.weight.dtype == torch.float32
        planes = half.forward_planes(images, cams)
        assert planes.dtype == torch.float32
        torch.testing.assert_close(planes, autocast_only.forward_planes(images, cams), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        loading.load_weights(cfg, st, weights_dtype=torch.float16)  # fp16 storage needs fp16 compute


def test_mismatched_checkpoints_are_one_line_weights_errors(tmp_path):
    cfg = config.tiny_config(config.INSTANT_MESH_BASE)
    state = fx.random_state(cfg)
    other = config.tiny_config(config.INSTANT_NERF_BASE)
    with pytest.raises(WeightsError, match=r"missing .*unexpected"):
        loading.load_weights(other, fx.write_checkpoint(tmp_path / "a.ckpt", state))
    bad = dict(state)
    bad["transformer.pos_embed"] = torch.zeros(1, 3, 3)
    with pytest.raises(WeightsError, match="other shapes") as err:
        loading.load_weights(cfg, fx.write_checkpoint(tmp_path / "b.ckpt", bad))
    assert "\n" not in str(err.value)
    (tmp_path / "c.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        loading.load_weights(cfg, tmp_path / "c.ckpt")
    with pytest.raises(WeightsError):
        loading.load_weights(cfg, tmp_path / "missing.ckpt")


def test_load_model_through_the_fake_hub(fake_hub, monkeypatch):
    cfg = config.tiny_config(config.INSTANT_NERF_LARGE)
    state = fx.random_state(cfg, seed=7)
    fx.serve_tiny_variant(fake_hub, monkeypatch, "instant-nerf-large", state)
    model = load_reconstruction_model("instant-nerf-large", device="cpu")
    ref = ReconstructionModel(cfg).eval()
    ref.load_state_dict(state)
    images = torch.rand(1, 4, 3, cfg.input_size, cfg.input_size)
    cams = cameras.zero123plus_cameras(4)[None]
    torch.testing.assert_close(model.forward_planes(images, cams), ref.forward_planes(images, cams))
    # second load: from the cache, offline
    again = load_reconstruction_model("instant-nerf-large", offline=True)
    torch.testing.assert_close(again.transformer.pos_embed, ref.transformer.pos_embed)


def test_dino_preprocessor_statistics_are_used(fake_hub, monkeypatch):
    cfg = config.tiny_config(config.INSTANT_MESH_BASE)
    state = fx.random_state(cfg, seed=2)
    imagenet = b'{"do_normalize": true, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}'
    fx.serve_tiny_variant(fake_hub, monkeypatch, "instant-mesh-base", state, preprocessor=imagenet)
    model = load_reconstruction_model("instant-mesh-base")
    assert model.cfg.encoder.image_mean == (0.485, 0.456, 0.406)
    x = torch.full((1, 1, 3, 4, 4), 0.5)
    torch.testing.assert_close(
        model.encoder.normalize(x[0])[0, :, 0, 0], (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


def test_dino_config_must_match_the_encoder():
    base = config.INSTANT_MESH_LARGE.encoder
    good = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "hidden_act": "gelu", "image_size": 224, "patch_size": 16, "layer_norm_eps": 1e-12, "qkv_bias": True}
    assert loading.encoder_config_from_dino(base, good, {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}) == base
    with pytest.raises(WeightsError, match="patch_size 8"):
        loading.encoder_config_from_dino(base, {**good, "patch_size": 8}, {})
    off = loading.encoder_config_from_dino(base, good, {"do_normalize": False})
    assert off.image_mean == (0.0, 0.0, 0.0) and off.image_std == (1.0, 1.0, 1.0)
