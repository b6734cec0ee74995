"""The texture refinement's Adam: torch.optim.Adam(foreach=True)'s update, bit for bit on the CPU, without torch.optim."""

import subprocess
import sys
import textwrap

import torch

from instantmesh_cli.texture.adam import Adam


def _problem(seed):
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(3, 8, 16, 16, generator=g).requires_grad_()
    head = [torch.randn(32, 8, generator=g).requires_grad_(), torch.randn(32, generator=g).requires_grad_()]
    target = torch.randn(32, 3 * 16 * 16, generator=g)
    return planes, head, target


def _loss(planes, head, target):
    x = planes.reshape(3, 8, -1).permute(1, 0, 2).reshape(8, -1)
    return ((torch.tanh(head[0] @ x + head[1][:, None]) - target) ** 2).mean()


def test_the_update_is_torchs_foreach_adam_bit_for_bit():
    ours, theirs = _problem(0), _problem(0)
    opt = Adam([([ours[0]], 0.05), (ours[1], 0.003)])
    ref = torch.optim.Adam([{"params": [theirs[0]], "lr": 0.05}, {"params": theirs[1], "lr": 0.003}], foreach=True)
    for _ in range(20):
        for params, optimiser in ((ours, opt), (theirs, ref)):
            optimiser.zero_grad()
            _loss(*params).backward()
            optimiser.step()
    for a, b in zip([ours[0], *ours[1]], [theirs[0], *theirs[1]]):
        assert torch.equal(a, b)
    assert opt.steps == 20


def test_parameters_without_a_gradient_are_left_alone():
    planes, head, target = _problem(1)
    frozen = torch.randn(4, requires_grad=True)
    before = frozen.detach().clone()
    opt = Adam([([planes, frozen], 0.1), (head, 0.1)])
    _loss(planes, head, target).backward()
    opt.step()
    assert torch.equal(frozen.detach(), before) and frozen.grad is None


def test_the_refinement_does_not_import_torch_dynamo():
    # Any torch.optim optimizer imports torch._dynamo when it is made (1.5 s of a cold start).
    code = textwrap.dedent('''
        import sys, torch
        from instantmesh_cli.texture.adam import Adam
        p = torch.zeros(3, requires_grad=True)
        opt = Adam([([p], 0.1)])
        (p - 1).pow(2).sum().backward()
        opt.step()
        print("torch._dynamo" in sys.modules, p.detach().tolist())
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    imported, values = done.stdout.split(" ", 1)
    assert imported == "False" and all(abs(v - 0.1) < 1e-6 for v in eval(values))  # a first step moves by lr
