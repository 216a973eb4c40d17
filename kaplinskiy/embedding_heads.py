"""An embedding whose weight is also an output head written as a product outside any module: ``F.linear(h, E.weight)``
or ``h @ E.weight.T`` (torchtune's ``TiedLinear`` computes it so, and hand-written GPTs do). The head's logits
``E h`` move by ``D_E h`` under a step: a change of every row, which the rows an embedding protects do not hold.
:class:`EmbeddingHead` stands for that head as an ``nn.Linear`` sharing the embedding's weight, so the head's inputs,
recorded where those products are made (:mod:`~kaplinskiy.outside_uses`), grow a basis of their own, as for a head
tied to the embedding as a module (Hugging Face's ``lm_head``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["EmbeddingHead", "head_layers"]


class EmbeddingHead(nn.Linear):
    """An embedding's weight (``num_embeddings x embedding_dim``) as the weight of a Linear head without a bias.
    It is never called; :class:`~kaplinskiy.LayerwiseMemory` records its inputs where a product takes the weight
    (or its transpose) outside the embedding's call."""

    def __init__(self, embedding: nn.Embedding) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = embedding.embedding_dim, embedding.num_embeddings
        self.register_parameter("weight", embedding.weight)
        self.register_parameter("bias", None)


def head_layers(model: nn.Module, heads: Sequence[nn.Module], tied: Sequence[nn.Module]) -> dict[int, EmbeddingHead]:
    """A head per embedding of ``heads``, by the embedding's ``id``. Refused, naming it: a module of ``heads``
    that is not an ``nn.Embedding`` of ``model``, one whose weight is frozen, and one whose weight a covered layer
    of ``tied`` already holds (a module head tied to it, whose calls record its inputs)."""
    names = {id(m): key for key, m in model.named_modules()}
    out = {}
    for m in heads:
        if not isinstance(m, nn.Embedding) or id(m) not in names:
            raise ValueError(f"Invalid heads: {type(m).__name__} is not an nn.Embedding of the model")
        name = names[id(m)]
        if not m.weight.requires_grad:
            raise ValueError(f"Invalid heads: the embedding {name!r} is frozen; only a trained one needs a head")
        holder = next((layer for layer in tied if layer.weight is m.weight and layer is not m), None)
        if holder is not None:
            raise ValueError(
                f"Invalid heads: the embedding {name!r} shares its weight with the covered layer "
                f"{names.get(id(holder), type(holder).__name__)!r}, whose calls record the head's inputs already"
            )
        out[id(m)] = EmbeddingHead(m)
    return out
