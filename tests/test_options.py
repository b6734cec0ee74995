"""PipelineOptions.check: the one place where every value is validated (usage errors, exit 2)."""

from __future__ import annotations

import pytest

from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.errors import UsageError


def test_defaults_are_valid_and_the_paper_settings():
    o = PipelineOptions().check()
    assert (o.model, o.views, o.scheduler, o.texture_size, o.refine_steps) == ("instant-mesh-large", 6, "euler-a", 1024, 20)
    assert o.runs_texture_stage


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "nope"}, "unknown model"),
        ({"views": 5}, "--views must be 4 or 6"),
        ({"scale": 0}, "--scale must be positive"),
        ({"scheduler": "ddim"}, "unknown --scheduler"),
        ({"steps": 0}, "--steps must be between 1 and 1000"),
        ({"guidance": -1.0}, "--guidance must be between 0 and 100"),
        ({"foreground_ratio": 0.0}, "--foreground-ratio must be in (0, 1]"),
        ({"texture_size": 32}, "--texture-size must be between 64 and 8192"),
        ({"texture_size": 16384}, "--texture-size must be between 64 and 8192"),
        ({"refine_steps": -1}, "--refine-steps must be 0 or more"),
        ({"target_faces": 5}, "--target-faces must be 0 (keep all) or at least 100"),
        ({"uv_method": "cube"}, "unknown --uv"),
        ({"dtype": "fp8"}, "unknown --dtype"),
    ],
)
def test_each_bad_value_is_one_usage_error(changes, message):
    with pytest.raises(UsageError) as info:
        PipelineOptions(**changes).check()
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_no_texture_stage_when_nothing_to_bake_or_refine():
    assert not PipelineOptions(texture=False, refine_texture=False).runs_texture_stage
    assert PipelineOptions(texture=False).runs_texture_stage  # vertex colours are still refined on the views


def test_provenance_has_no_paths_or_devices():
    p = PipelineOptions(weights_dir="/secret/place", device="cuda:3").provenance()
    assert "weights_dir" not in p and "device" not in p and p["model"] == "instant-mesh-large"
