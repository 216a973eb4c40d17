"""An embedding whose weight is also an output head written as a product outside any module: ``F.linear(h, E.weight)``
or ``h @ E.weight.T`` (torchtune's ``TiedLinear`` computes it so, and hand-written GPTs do), possibly with a bias of
the head's own (``F.linear(h, E.weight, b)``, as BERT's masked-language head adds one). The head's logits
``E h + b`` move by ``D_E h + d_b`` under a step: a change of every row, which the rows an embedding protects do not
hold. :class:`EmbeddingHead` stands for that head as an ``nn.Linear`` sharing the embedding's weight (and holding
the bias), so the head's inputs, recorded where those products are made (:mod:`~kaplinskiy.outside_uses`, with the
input of 1 that the bias multiplies where the product adds it), grow a basis of their own, as for a head tied to
the embedding as a module (Hugging Face's ``lm_head``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["EmbeddingHead", "HeadSpec", "head_layers"]


class EmbeddingHead(nn.Linear):
    """An embedding's weight (``num_embeddings x embedding_dim``) as the weight of a Linear head, with the head's
    own bias (``num_embeddings`` entries, a parameter of the model) or none. It is never called;
    :class:`~kaplinskiy.LayerwiseMemory` records its inputs where a product takes the weight (or its transpose)
    outside the embedding's call."""

    def __init__(self, embedding: nn.Embedding, bias: nn.Parameter | None = None) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = embedding.embedding_dim, embedding.num_embeddings
        self.register_parameter("weight", embedding.weight)
        self.register_parameter("bias", bias)


HeadSpec = nn.Module | tuple[nn.Module, Tensor]  # an embedding, or an embedding and its head's own bias


def head_layers(model: nn.Module, heads: Sequence[HeadSpec], tied: Sequence[nn.Module]) -> dict[int, EmbeddingHead]:
    """A head per entry of ``heads`` (an embedding, or a pair of an embedding and its head's bias), by the
    embedding's ``id``. Refused, naming it: an entry that is not an ``nn.Embedding`` of ``model``, one whose weight
    is frozen, one whose weight a covered layer of ``tied`` already holds (a module head tied to it, whose calls
    record its inputs), and a bias that is no parameter of ``model`` with one entry per embedding row."""
    names = {id(m): key for key, m in model.named_modules()}
    parameters = {id(p) for p in model.parameters()}
    out = {}
    for entry in heads:
        m, bias = entry if isinstance(entry, tuple) else (entry, None)
        if not isinstance(m, nn.Embedding) or id(m) not in names:
            raise ValueError(f"Invalid heads: {type(m).__name__} is not an nn.Embedding of the model")
        name = names[id(m)]
        if bias is not None and (id(bias) not in parameters or tuple(bias.shape) != (m.num_embeddings,)):
            raise ValueError(
                f"Invalid heads: the bias given for the head of {name!r} must be a parameter of the model with "
                f"{m.num_embeddings} entries (one per row of the embedding), not a tensor of shape {tuple(bias.shape)}"
            )
        if not m.weight.requires_grad:
            raise ValueError(f"Invalid heads: the embedding {name!r} is frozen; only a trained one needs a head")
        holder = next((layer for layer in tied if layer.weight is m.weight and layer is not m), None)
        if holder is not None:
            raise ValueError(
                f"Invalid heads: the embedding {name!r} shares its weight with the covered layer "
                f"{names.get(id(holder), type(holder).__name__)!r}, whose calls record the head's inputs already"
            )
        out[id(m)] = EmbeddingHead(m, bias)
    return out
