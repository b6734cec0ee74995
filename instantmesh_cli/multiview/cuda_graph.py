"""A denoiser replayed as a CUDA graph: one graph launch per step instead of launching each of its kernels.

The sampler's step loop never synchronises with the host, so a whole UNet pass (write +
read, or the read pass alone) plus CFG can be captured once and replayed; measured on an
H100, 75 steps went from 4.04 s to 2.73 s with the same result.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class GraphedPass:
    """Replays a UNet pass (write + read + CFG, the read pass + CFG, or a batched write pass) as one CUDA graph
    per input signature (the tensors' shapes and dtypes, and the keyword options).

    Inputs are copied into static buffers, the graph is replayed, and the static
    output is returned: it stays valid until the next call, which is all the solver
    step needs. The UNet's weights must not move while graphs exist.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        # signature -> (graph, static inputs, static output: a tensor or a tuple of them)
        self.graphs: dict[tuple, tuple[Any, tuple[torch.Tensor, ...], Any]] = {}

    def __call__(self, *args: torch.Tensor, **options: Any) -> Any:
        key = tuple((a.shape, a.dtype) for a in args) + tuple(sorted(options.items()))
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._capture(args, options)
            self.graphs[key] = entry
        graph, static_in, static_out = entry
        for dst, src in zip(static_in, args):
            dst.copy_(src, non_blocking=True)
        graph.replay()
        return static_out

    def _capture(self, args: tuple[torch.Tensor, ...], options: dict[str, Any]) -> tuple:
        with torch.cuda.device(args[0].device):  # streams and graphs belong to the inputs' GPU
            return self._capture_here(args, options)

    def _capture_here(self, args: tuple[torch.Tensor, ...], options: dict[str, Any]) -> tuple:
        static_in = tuple(a.clone() for a in args)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            # One warm-up pass on a side stream: lazy initialisation (cuBLAS's workspace for this stream,
            # cuDNN's plans and attention graphs, Triton's kernel loads) must not happen inside the capture.
            self.fn(*static_in, **options)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # "thread_local": only this thread's calls must be capture-safe. Under the default ("global") a
        # cudaMalloc or a synchronous copy in *any* thread during the capture fails and invalidates it; a
        # one-photo process loads the reconstruction model in a thread while its first views capture, and
        # two of three such cold runs on the H200 then ended in a CUDA error once the views started earlier.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self.fn(*static_in, **options)
        return graph, static_in, static_out
