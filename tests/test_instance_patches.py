"""patch_instances: per-instance method replacement, and nothing done where the class or method is missing."""

from torch import nn

from instantmesh_cli.multiview.instance_patches import patch_instances


class _Wide(nn.Linear):
    pass


def _model():
    return nn.Sequential(nn.Linear(2, 2), _Wide(2, 2), nn.Sequential(nn.Linear(2, 2)))


def _tagged(module, *args):
    return ("patched", type(module).__name__)


def test_instances_get_the_replacement_bound_to_them_and_the_class_keeps_its_own():
    model = _model()
    assert patch_instances([model], "torch.nn.Linear", "extra_repr", _tagged) == 3  # subclasses too
    assert model[1].extra_repr() == ("patched", "_Wide")
    assert "patched" not in nn.Linear(2, 2).extra_repr()  # a new instance: the class's own method
    exact = _model()
    assert patch_instances([exact], "torch.nn.Linear", "extra_repr", _tagged, exact=True) == 2
    assert "patched" not in exact[1].extra_repr()
    chosen = _model()
    assert patch_instances([chosen], "torch.nn.Linear", "extra_repr", _tagged, where=lambda m: m is chosen[0]) == 1


def test_a_missing_class_or_method_patches_nothing():
    model = _model()
    assert patch_instances([model], "torch.nn.NoSuchLayer", "forward", _tagged) == 0
    assert patch_instances([model], "no_such_package.Layer", "forward", _tagged) == 0
    assert patch_instances([model], "torch.nn.Linear", "no_such_method", _tagged) == 0
    assert all("no_such_method" not in vars(m) for m in model.modules())
