"""Merged network calls: one forward pass on concatenated batches instead of several.

A training step calls some networks on several batches: the GAN discriminator on real and on
generated images, a CycleGAN generator on real, identity and reconstruction inputs. When a
network treats every sample on its own, one call on the concatenation computes the same
outputs (up to float rounding) with half or a third of the kernel launches and Python calls,
and larger kernels. At the batch sizes GAN training uses, launches are what bounds a GPU step
(docs/benchmarks.md), so this is the cheapest speed-up there is (``train.merge_calls``).

A network is merged only when it says it is per-sample (a ``per_sample = True`` attribute; the
built-in networks have it) and holds no BatchNorm, whose training-mode statistics span the
batch. Networks that do not say so (a third-party discriminator with a minibatch-stddev layer,
say) are called once per batch, as before. Spectral normalisation, which advances its power
iteration once per training-mode call, then advances once per merged call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: the attribute a network sets to ``True`` when each output sample depends only on its own
#: input sample (in training mode), so that calls on several batches may be merged
PER_SAMPLE = "per_sample"


def per_sample(net: nn.Module) -> bool:
    """Whether ``net`` may be called once on concatenated batches (see the module docs)."""
    if not getattr(net, PER_SAMPLE, False):
        return False
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def call(
    net: nn.Module,
    inputs: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor | None] | None = None,
    merge: bool = True,
) -> list[torch.Tensor]:
    """``[net(x, label) for x, label in zip(inputs, labels)]``, as one call of ``net`` on the
    concatenated inputs when ``merge`` (the caller checked :func:`per_sample`)."""
    labels = list(labels) if labels is not None else [None] * len(inputs)
    if not merge or len(inputs) == 1:
        return [net(x, y) for x, y in zip(inputs, labels, strict=True)]
    x = torch.cat(list(inputs))
    y = None if labels[0] is None else torch.cat(labels)  # type: ignore[arg-type]
    return list(net(x, y).split([len(i) for i in inputs]))
