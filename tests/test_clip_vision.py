"""Our CLIP vision tower (multiview/clip_vision.py) against transformers' CLIPVisionModelWithProjection.

transformers is the reference here only; the run path must not import it (last test).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from instantmesh_cli.errors import WeightsError
from instantmesh_cli.multiview.clip_vision import ClipVisionConfig, ClipVisionTower
from instantmesh_cli.multiview.loading import ZERO123PLUS_VISION_CONFIG, load_vision_tower

from multiview_fixtures import GRID_H, GRID_W, make_tiny_zero123plus, make_white_unet_bin

TINY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
        "image_size": 56, "patch_size": 14, "projection_dim": 16}
RELEASED_PARAMETERS = 632_076_800  # reference/zero123plus.md §1


def _reference(folder, hidden_act="gelu", seed=0):
    """A random transformers tower saved as ``folder/vision_encoder`` (save_pretrained); returned in eval mode."""
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY, hidden_act=hidden_act)).eval()
    # CLIP's init leaves LayerNorms at 1/0 and biases at 0: noise makes every parameter count.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder / "vision_encoder")
    return model


def _pixels(seed=1):
    return torch.randn(2, 3, TINY["image_size"], TINY["image_size"], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hidden_act", ["gelu", "quick_gelu", "gelu_pytorch_tanh"])
def test_image_embeds_equal_transformers(tmp_path, hidden_act):
    reference = _reference(tmp_path, hidden_act)
    ours = load_vision_tower(tmp_path, torch.float32)
    x = _pixels()
    with torch.no_grad():
        expected = reference(x).image_embeds
        got = ours(x)
    assert got.shape == (2, TINY["projection_dim"]) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    # the comparison can tell activations apart (so it would catch a wrong one)
    other = "quick_gelu" if hidden_act != "quick_gelu" else "gelu"
    wrong = ClipVisionTower(dataclasses.replace(ours.config, hidden_act=other))
    wrong.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert (wrong(x) - expected).abs().max() > 1e-3


def test_weights_are_cast_to_the_requested_dtype(tmp_path):
    reference = _reference(tmp_path)
    ours = load_vision_tower(tmp_path, torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in ours.parameters())
    with torch.no_grad():
        got = ours(_pixels()).float()  # fp32 pixels: cast by the patch embedding, as in transformers
        expected = reference(_pixels()).image_embeds
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0.05)


def test_config_defaults_are_transformers_defaults():
    theirs = CLIPVisionConfig()
    ours = ClipVisionConfig()
    assert {f.name: getattr(ours, f.name) for f in dataclasses.fields(ours)} == {
        f.name: getattr(theirs, f.name) for f in dataclasses.fields(ours)
    }
    # unknown keys of config.json are ignored; a whole CLIPConfig's vision part is taken
    assert ClipVisionConfig.from_dict({"hidden_size": 64, "num_attention_heads": 4, "model_type": "x", "dtype": "f"}) \
        == ClipVisionConfig(hidden_size=64, num_attention_heads=4)
    assert ClipVisionConfig.from_dict({"model_type": "clip", "vision_config": {"patch_size": 14}}).patch_size == 14
    with pytest.raises(ValueError, match="gelu_new"):
        ClipVisionConfig(hidden_act="gelu_new")
    with pytest.raises(ValueError, match="num_attention_heads"):
        ClipVisionConfig(hidden_size=30, num_attention_heads=4)


def test_released_config_has_the_released_parameters_and_keys():
    with torch.device("meta"):
        ours = ClipVisionTower(ClipVisionConfig.from_dict(ZERO123PLUS_VISION_CONFIG))
        theirs = CLIPVisionModelWithProjection(CLIPVisionConfig(**ZERO123PLUS_VISION_CONFIG))
    assert sum(p.numel() for p in ours.parameters()) == RELEASED_PARAMETERS
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours.state_dict()["vision_model.embeddings.position_embedding.weight"].shape == (257, 1280)


def _rewrite(folder, change):
    path = folder / "vision_encoder" / "model.safetensors"
    state = load_file(path)
    change(state)
    save_file(state, path)


def test_missing_or_unexpected_keys_are_a_weights_error(tmp_path):
    _reference(tmp_path)
    _rewrite(tmp_path, lambda s: s.pop("vision_model.post_layernorm.bias"))
    with pytest.raises(WeightsError, match=r"1 missing \(e\.g\. vision_model\.post_layernorm\.bias\)"):
        load_vision_tower(tmp_path)

    _reference(tmp_path)
    _rewrite(tmp_path, lambda s: s.update({"vision_model.extra.weight": torch.zeros(3)}))
    with pytest.raises(WeightsError, match=r"1 unexpected \(e\.g\. vision_model\.extra\.weight\)"):
        load_vision_tower(tmp_path)

    _reference(tmp_path)
    _rewrite(tmp_path, lambda s: s.update({"visual_projection.weight": torch.zeros(17, 32)}))
    with pytest.raises(WeightsError, match="size mismatch for visual_projection.weight"):
        load_vision_tower(tmp_path)


def test_an_old_pickled_checkpoint_with_position_ids_loads(tmp_path):
    """Older transformers wrote pytorch_model.bin with the position_ids buffer; safetensors wins when both exist."""
    reference = _reference(tmp_path)
    folder = tmp_path / "vision_encoder"
    state = load_file(folder / "model.safetensors")
    positions = (TINY["image_size"] // TINY["patch_size"]) ** 2 + 1
    torch.save({**state, "vision_model.embeddings.position_ids": torch.arange(positions)[None]},
               folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    x = _pixels()
    with torch.no_grad():
        torch.testing.assert_close(load_vision_tower(tmp_path)(x), reference(x).image_embeds, atol=1e-6, rtol=1e-6)

    save_file({k: torch.zeros_like(v) for k, v in state.items()}, folder / "model.safetensors")
    with torch.no_grad():
        assert torch.count_nonzero(load_vision_tower(tmp_path)(x)) == 0


def test_the_multiview_stage_does_not_import_transformers(tmp_path):
    """With the empty-prompt embedding given, loading and running the multiview stage leaves transformers unimported."""
    folder = make_tiny_zero123plus(tmp_path / "zero123plus")
    white = make_white_unet_bin(tmp_path / "white.bin")
    code = textwrap.dedent(f"""
        import sys
        import torch
        from PIL import Image
        from instantmesh_cli.multiview.loading import load_components
        from instantmesh_cli.multiview.pipeline import Zero123PlusPipeline

        c = load_components({str(folder)!r}, dtype=torch.float32, with_text_encoder=False)
        assert c.text_encoder is None and c.tokenizer is None
        pipe = Zero123PlusPipeline.from_folder({str(folder)!r}, unet_weights={str(white)!r}, dtype="fp32",
                                               text_embeds=torch.zeros(1, 77, 32))
        latents = pipe.generate_latents(Image.new("RGB", (40, 40), (200, 30, 30)), steps=1,
                                       height={GRID_H}, width={GRID_W})
        assert torch.isfinite(latents).all()
        print(sorted(m for m in sys.modules if m == "transformers" or m.startswith("transformers.")))

        # a first run in the same process still gets the text encoder, and diffusers sees transformers again
        from diffusers.utils import is_transformers_available
        text_encoder = load_components({str(folder)!r}, dtype=torch.float32).text_encoder
        print(type(text_encoder).__name__, is_transformers_available())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "CLIPTextModel True"]
