"""Fusions of a frozen item table (LLM-enhanced embeddings, or a control table) with learnable ID embeddings.

Each fusion is an item embedding module like those of `embedding.py`: `.all()` gives the (N+1, d)
table that a backbone both looks up and scores against (row 0, padding, is exactly zero), so no
backbone changes. The frozen table `e_llm` [N+1, H] is a buffer: never optimised, never saved
(it comes from an upstream stage). `train.source` decides what it holds (enhanced embeddings, the
pretrain backbone's item table, or a fixed random table), which separates what a language model
adds from what the pretrained backbone already knew.

    gate       the paper's (TSLRec): g * e_id + (1 - g) * W e_llm           (embedding.GateEmbedding)
    add        e_id + W e_llm                                                (AddEmbedding)
    init       e_id initialised from a PCA of e_llm, then trained freely     (InitEmbedding)
    dual       ID view and adapted LLM view, one shared backbone run twice   (DualEmbedding + DualBackbone)
    nullspace  frozen semantic subspace + ID embeddings in its null space    (NullspaceEmbedding)
    adapter    MLP(e_llm) alone, no ID embeddings (an ensemble member)       (AdapterEmbedding)
The `ensemble` fusion trains two whole models and mixes their scores: `stages/core/ensemble.py`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from schemas.backbone import BackboneConfig
from stages.backbones import Backbone, build
from stages.backbones.embedding import GateEmbedding, ItemEmbedding, rows

ID_STD = 0.02   # the base table's init scale (SASRec / RecBole), which every ID part starts from


def frozen_table(table: torch.Tensor, n_items: int, standardize: bool) -> torch.Tensor:
    """(N+1, H) float copy of an upstream table; standardized as GateEmbedding does (center over items
    1..N, one global unit std) so that a shared prompt component does not drown the per-item signal."""
    if table.dim() != 2 or table.shape[0] != n_items + 1:
        raise ValueError(f"the fusion's item table has shape {tuple(table.shape)}, expected (N+1={n_items + 1}, H)")
    e = table.detach().float().clone()                                   # (N+1, H)
    if standardize:
        e = e - e[1:].mean(0, keepdim=True)
        e = e / e[1:].std().clamp_min(1e-12)
    return e


def pca_coordinates(table: torch.Tensor, k: int, whiten: bool, seed: int = 0) -> torch.Tensor:
    """(N+1, H) -> (N+1, k): items 1..N projected on the top-k principal directions of the table,
    scaled to an overall std of ID_STD; row 0 stays zero. Whitened, every component gets unit variance
    first. If H < k, the missing components are seeded Gaussian noise (a plain random init)."""
    e = table[1:] - table[1:].mean(0, keepdim=True)                      # (N, H) centered
    u, s, _ = torch.linalg.svd(e, full_matrices=False)                  # u (N, r), s (r,)
    r = min(k, s.numel())
    coords = u[:, :r] * (e.shape[0] ** 0.5 if whiten else s[:r])         # (N, r)
    if r < k:
        g = torch.Generator().manual_seed(seed)
        fill = torch.randn(e.shape[0], k - r, generator=g) * coords.std().clamp_min(1e-12)
        coords = torch.cat([coords, fill], 1)                            # (N, k)
    coords = coords / coords.std().clamp_min(1e-12) * ID_STD
    return torch.cat([coords.new_zeros(1, k), coords])                   # (N+1, k)


def id_table(n_items: int, dim: int, init: torch.Tensor | None = None) -> nn.Embedding:
    """A learnable (N+1, dim) table, N(0, ID_STD) unless `init` (N+1, dim) is given; row 0 zero."""
    emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
    with torch.no_grad():
        if init is None:
            nn.init.normal_(emb.weight, std=ID_STD)
        else:
            emb.weight.copy_(init)
        emb.weight[0].zero_()
    return emb


def projection(h: int, dim: int, standardize: bool) -> nn.Linear:
    """W: H -> d; on a standardized table W e_llm starts at the ID table's scale (std ID_STD)."""
    w = nn.Linear(h, dim, bias=False)
    if standardize:
        nn.init.normal_(w.weight, std=ID_STD / h ** 0.5)
    return w


class Fusion(nn.Module):
    """Common part: the frozen table as a buffer and the row-0 mask. Subclasses define `all()`."""

    def __init__(self, n_items: int, dim: int, table: torch.Tensor, standardize: bool = True):
        super().__init__()
        self.n_items, self.dim = n_items, dim
        self.register_buffer("e_llm", frozen_table(table, n_items, standardize), persistent=False)   # (N+1, H)
        # Row 0 is zeroed after fusion: the frozen table may give the padding id a non-zero vector, and
        # row 0 of a learnable table can get a gradient (backbones index weights, bypassing padding_idx).
        self.register_buffer("keep", (torch.arange(n_items + 1) > 0).float().unsqueeze(1), persistent=False)

    def all(self) -> torch.Tensor:  # (N+1, d)
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (...,) -> (..., d)
        return rows(self.all(), ids)


class AddEmbedding(Fusion):
    """`add`: e = e_id + W e_llm, e_llm frozen.

    The additive form of LLMEmb (Liu et al., AAAI 2025: frozen LLM item embeddings through a trainable
    adapter), here beside a free ID table instead of replacing it, and without LLMEmb's alignment loss
    (which would change the trainer's objective). Unlike the gate, neither side can be switched off."""

    def __init__(self, n_items: int, dim: int, table: torch.Tensor, standardize: bool = True):
        super().__init__(n_items, dim, table, standardize)
        self.item = id_table(n_items, dim)
        self.proj = projection(self.e_llm.shape[1], dim, standardize)

    def all(self) -> torch.Tensor:  # (N+1, d)
        return (self.item.weight + self.proj(self.e_llm)) * self.keep


class InitEmbedding(ItemEmbedding):
    """`init`: a plain ID table initialised from a PCA of e_llm (whitened or not), then trained freely.

    The initialisation of LLM-ESR's collaborative view (Liu et al., NeurIPS 2024: the ID embeddings start
    from dimension-reduced LLM embeddings) and of WhitenRec-style whitened text embeddings, used alone:
    the table keeps nothing frozen, so any gain is the starting point's."""

    def __init__(self, n_items: int, dim: int, table: torch.Tensor, standardize: bool = True, whiten: bool = False):
        super().__init__(n_items, dim)   # its all() keeps row 0 at zero
        init = pca_coordinates(frozen_table(table, n_items, standardize), dim, whiten)   # (N+1, d)
        with torch.no_grad():
            self.item.weight.copy_(init)


def adapter_mlp(h: int, dim: int) -> nn.Sequential:
    """LLM-ESR's adapter H -> max(d, H/2) -> d; the last layer starts at the ID scale (std ~ID_STD)."""
    hidden = max(dim, h // 2)
    mlp = nn.Sequential(nn.Linear(h, hidden), nn.GELU(), nn.Linear(hidden, dim))
    nn.init.normal_(mlp[0].weight, std=h ** -0.5)
    nn.init.normal_(mlp[2].weight, std=ID_STD / hidden ** 0.5 * 2)    # GELU halves the variance, roughly
    nn.init.zeros_(mlp[0].bias)
    nn.init.zeros_(mlp[2].bias)
    return mlp


class AdapterEmbedding(Fusion):
    """`adapter`: e = MLP(e_llm) alone, no ID embeddings: the table's own recommender.

    The semantic view of LLM-ESR (NeurIPS 2024) on its own; an `ensemble` member (EnsRec-style late
    fusion pairs it with an ID model) and a measure of what the frozen table carries by itself."""

    def __init__(self, n_items: int, dim: int, table: torch.Tensor, standardize: bool = True):
        super().__init__(n_items, dim, table, standardize)
        self.adapter = adapter_mlp(self.e_llm.shape[1], dim)

    def all(self) -> torch.Tensor:  # (N+1, d)
        return self.adapter(self.e_llm) * self.keep


class DualEmbedding(Fusion):
    """`dual`: LLM-ESR's two views (Liu et al., NeurIPS 2024), side by side in one (N+1, 2d) table.

    ID view: a learnable table initialised from the PCA of e_llm (as LLM-ESR does). LLM view: the frozen
    e_llm through an MLP adapter. `dim` is d (the backbone's width); `.all()` is [e_id | adapter(e_llm)],
    which `DualBackbone` splits to run the backbone once per view. LLM-ESR's retrieval-augmented
    self-distillation is left out (it changes the training objective)."""

    def __init__(self, n_items: int, dim: int, table: torch.Tensor, standardize: bool = True, whiten: bool = False):
        super().__init__(n_items, dim, table, standardize)
        self.item = id_table(n_items, dim, pca_coordinates(self.e_llm, dim, whiten))
        self.adapter = adapter_mlp(self.e_llm.shape[1], dim)

    def all(self) -> torch.Tensor:  # (N+1, 2d)
        return torch.cat([self.item.weight, self.adapter(self.e_llm)], -1) * self.keep


class DualBackbone(Backbone):
    """A backbone run over both views of a DualEmbedding, outputs concatenated (B, L, 2d).

    Scoring against the (N+1, 2d) table then sums the two views' logits, h_id . e_id + h_llm . e_llm,
    which is LLM-ESR's combination (concatenated user and item representations). The wrapped backbone's
    weights are shared by both views and its code is unchanged: only its `encode` is called."""

    def __init__(self, inner: Backbone):
        nn.Module.__init__(self)   # not Backbone.__init__: the item table stays the inner backbone's
        if not isinstance(inner.embedding, DualEmbedding):
            raise ValueError("DualBackbone needs a backbone built around a DualEmbedding")
        self.inner = inner
        self.cfg, self.max_len = inner.cfg, inner.max_len

    @property
    def embedding(self) -> DualEmbedding:
        return self.inner.embedding

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        if seq.shape[1] > self.max_len:
            seq = seq[:, -self.max_len:]
        table = self.embedding.all() if table is None else table           # (N+1, 2d)
        id_view, llm_view = table.split(self.cfg.dim, -1)                   # 2 x (N+1, d)
        return torch.cat([self.inner.encode(rows(id_view, seq), seq),
                          self.inner.encode(rows(llm_view, seq), seq)], -1)  # (B, L, 2d)


class NullspaceEmbedding(Fusion):
    """`nullspace`: AlphaFuse (Hu et al., SIGIR 2025): ID embeddings learned only in the null space of
    the frozen language embeddings.

    In the PCA basis of e_llm, the top s = semantic_share * d principal components (whitened, scaled to
    std ID_STD) form the frozen semantic subspace; the other d - s coordinates, where the truncated
    semantic embeddings are zero, hold a learnable ID table. e = [c * sem | e_id], with one learnable
    scalar c (the frozen part's weight against the ID part, which grows in training)."""

    def __init__(self, n_items: int, dim: int, table: torch.Tensor, standardize: bool = True,
                 semantic_share: float = 0.5):
        super().__init__(n_items, dim, table, standardize)
        s = min(dim - 1, max(1, round(semantic_share * dim)))
        self.register_buffer("semantic", pca_coordinates(self.e_llm, s, whiten=True), persistent=False)  # (N+1, s)
        del self.e_llm   # only its principal part is used
        self.scale = nn.Parameter(torch.ones(()))
        self.item = id_table(n_items, dim - s)                             # (N+1, d - s)

    def all(self) -> torch.Tensor:  # (N+1, d)
        return torch.cat([self.scale * self.semantic, self.item.weight], -1) * self.keep


# Each fusion name of schemas/names.py (EMBEDDING_FUSIONS, and 'adapter', an ensemble member) -> its module.
EMBEDDINGS: dict[str, type[nn.Module]] = {"gate": GateEmbedding, "add": AddEmbedding, "init": InitEmbedding,
                                          "dual": DualEmbedding, "nullspace": NullspaceEmbedding, "adapter": AdapterEmbedding}


def make_fusion(fusion: str, n_items: int, dim: int, table: torch.Tensor, *, standardize: bool = True,
                whiten: bool = False, semantic_share: float = 0.5) -> nn.Module:
    """The item embedding module of `fusion` over the frozen (N+1, H) `table`."""
    if fusion not in EMBEDDINGS:
        raise ValueError(f"unknown fusion {fusion!r}")
    extra = {"init": (whiten,), "dual": (whiten,), "nullspace": (semantic_share,)}.get(fusion, ())
    return EMBEDDINGS[fusion](n_items, dim, table, standardize, *extra)


def build_fused(cfg: BackboneConfig, embedding: nn.Module) -> Backbone:
    """The backbone around a fusion's embedding; a DualEmbedding gets the two-view wrapper."""
    model = build(cfg, embedding)
    return DualBackbone(model) if isinstance(embedding, DualEmbedding) else model
