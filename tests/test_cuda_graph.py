"""GraphedPass on CUDA: captured once per signature, replayed with the eager result, and captured safely
while another thread allocates and copies (a model loading beside the first views)."""

import threading

import pytest
import torch

from instantmesh_cli.multiview.cuda_graph import GraphedPass

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _pass(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ w) * 2 + 1


def test_a_replay_equals_the_eager_pass_and_one_graph_serves_each_signature():
    g = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(256, 256, device="cuda", generator=g)
    graphed = GraphedPass(lambda x: _pass(x, w))
    for _ in range(3):
        x = torch.randn(64, 256, device="cuda", generator=g)
        assert torch.equal(graphed(x), _pass(x, w))
    x = torch.randn(32, 256, device="cuda", generator=g)
    assert torch.equal(graphed(x), _pass(x, w))
    assert len(graphed.graphs) == 2


def test_a_capture_beside_a_thread_that_allocates_and_copies_succeeds():
    g = torch.Generator(device="cuda").manual_seed(1)
    w = torch.randn(1024, 1024, device="cuda", generator=g)
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:  # what a model load does: fresh device memory, synchronous copies from the host
        stream = torch.cuda.Stream()
        try:
            with torch.cuda.stream(stream):
                while not stop.is_set():
                    block = torch.empty(64 << 20, dtype=torch.uint8).to("cuda")
                    del block
                    torch.cuda.empty_cache()  # so the next one is a real cudaMalloc
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    t = threading.Thread(target=load)
    t.start()
    try:
        for rows in range(8, 520, 32):  # many captures, so that some meet the loader mid-call
            x = torch.randn(rows, 1024, device="cuda", generator=g)
            graphed = GraphedPass(lambda x: _pass(x, w))
            assert torch.equal(graphed(x), _pass(x, w))
    finally:
        stop.set()
        t.join()
    assert errors == []
