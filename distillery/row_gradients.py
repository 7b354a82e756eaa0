"""The word-embedding gradient written into one kept buffer, its rows zeroed as they are used.

PyTorch's backward of an embedding lookup on the CPU allocates a zeroed gradient of the whole matrix every step
(``embedding_dense_backward``: 30,522 x 384 floats, 47 MB, for MiniLM) and adds each token's gradient into its row.
A step touches a few hundred rows, so most of that work is the zeroing (``aten::fill_``: 8-11% of a 1-layer
student's fp32 step in the profiles of docs/measurements.md). Here the lookup's backward adds the same rows, in
the same order, into a buffer kept between steps, and zeroes only the rows the step before had written. The
optimizer, the gradient-norm clipping and the weights then see the same numbers to the bit with one lookup of
the matrix a step (a test trains both ways and compares every weight); only the fill is gone.

Installed for the training of one process only, on the CPU, for a plain ``nn.Embedding`` of at least
``MIN_ELEMENTS`` trainable weights without ``max_norm``, ``scale_grad_by_freq`` or sparse gradients: a
multi-process run's DDP reducer waits for autograd's own gradient hooks, and a GPU's backward adds in another
order; nor for a matrix the model holds twice (tied to an output layer). Several lookups a step, or gradient
accumulation, give the same sums up to float rounding; a weight also used outside the lookup gets autograd's
gradient added to the buffer, which is then zeroed whole.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

MIN_ELEMENTS = 1 << 20  # a matrix whose fill is worth skipping: word embeddings, not position or type embeddings


class _Rows:
    """The kept gradient buffer of one weight, and the rows written since it was last handed to the weight."""

    def __init__(self, module: nn.Embedding):
        self.module = module  # not its weight: a checkpoint loaded into the module may bring another Parameter
        self.buffer: Optional[torch.Tensor] = None
        self.written: Optional[torch.Tensor] = None
        self.dense = False  # autograd added a gradient of its own (the weight used outside the lookup)
        self.hook = module.weight.register_post_accumulate_grad_hook(self._dense_added)

    def _dense_added(self, weight: torch.Tensor) -> None:
        self.dense = True  # any row of the buffer may hold it now: zeroed whole when it is handed back

    def add(self, ids: torch.Tensor, grad_out: torch.Tensor) -> None:
        ids = ids.reshape(-1).long()
        grad = grad_out.reshape(ids.numel(), -1)
        weight, padding_idx = self.module.weight, self.module.padding_idx
        if padding_idx is not None:  # as embedding_dense_backward: the padding row gets no gradient
            used = ids != padding_idx
            ids, grad = ids[used], grad[used]
        if weight.grad is None:  # the optimizer's zero_grad set it to None: hand the buffer back, zeroed
            buffer = self.buffer
            if buffer is None or (buffer.shape, buffer.dtype, buffer.device) != (weight.shape, weight.dtype,
                                                                                  weight.device):
                self.buffer = torch.zeros_like(weight)
            elif self.dense:
                buffer.zero_()
            elif self.written is not None:
                buffer.index_fill_(0, self.written, 0.0)
            weight.grad, self.written, self.dense = self.buffer, None, False
        # row by row in the order of ``ids``, as the dense backward adds them, from zero
        weight.grad.index_add_(0, ids, grad.to(weight.grad.dtype))
        if not self.dense:
            self.written = ids.unique() if self.written is None else torch.cat([self.written, ids]).unique()


class _Lookup(torch.autograd.Function):
    """``F.embedding`` whose backward adds into the kept buffer instead of returning a dense gradient. ``anchor``,
    an empty tensor that requires grad, is what makes autograd call it: the weight goes in detached."""

    @staticmethod
    def forward(ctx, anchor: torch.Tensor, ids: torch.Tensor, weight: torch.Tensor, padding_idx: Optional[int],
                rows: _Rows) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.rows = rows
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (ids,) = ctx.saved_tensors
        ctx.rows.add(ids, grad_out)
        return torch.zeros(0), None, None, None, None


class RowGradientEmbedding(nn.Embedding):
    """An ``nn.Embedding`` while it trains here: the same forward, the backward above. A copy or pickle of it is a
    plain ``nn.Embedding`` without the buffer."""

    _rows: _Rows

    def __reduce_ex__(self, protocol):
        return object.__new__, (nn.Embedding,), {k: v for k, v in self.__dict__.items() if k != "_rows"}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and self.weight.requires_grad):  # evaluation: the plain lookup
            return super().forward(ids)
        anchor = torch.empty(0, requires_grad=True)
        return _Lookup.apply(anchor, ids, self.weight.detach(), self.padding_idx, self._rows)


def _eligible(module: nn.Module, shared: set) -> bool:
    return (type(module) is nn.Embedding and module.weight.requires_grad and module.weight.device.type == "cpu"
            and module.weight.numel() >= MIN_ELEMENTS and module.max_norm is None
            and not module.scale_grad_by_freq and not module.sparse and id(module.weight) not in shared)


def _shared(model: nn.Module) -> set:
    """The ids of parameters the model holds more than once (input embeddings tied to an output layer)."""
    seen: dict = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    return {key for key, count in seen.items() if count > 1}


@contextlib.contextmanager
def row_gradients(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """While training ``model``: its large plain embeddings write their gradients as above. Yields how many; on
    exit each is a plain ``nn.Embedding`` again, and its weight keeps the last gradient as autograd would."""
    shared = _shared(model) if enabled else set()
    swapped = [m for m in model.modules() if _eligible(m, shared)] if enabled else []
    for module in swapped:
        module.__class__ = RowGradientEmbedding
        module._rows = _Rows(module)
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            module.__class__ = nn.Embedding
            module._rows.hook.remove()
            del module._rows
