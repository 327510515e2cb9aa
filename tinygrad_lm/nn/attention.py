"""Scaled dot-product attention and multi-head attention, as PyTorch defines them.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V                      (Vaswani et al., eq. 1)
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
        head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

The two APIs read a boolean mask in OPPOSITE ways, exactly as PyTorch does:
``scaled_dot_product_attention`` takes True as "may attend", ``MultiheadAttention``
takes True as "masked out" (both for ``attn_mask`` and ``key_padding_mask``).
``scaled_dot_product_attention`` is defined, with its argument checks, in
:mod:`tinygrad_lm.nn.functional` (as ``F.scaled_dot_product_attention``) and is also
importable from here, where MultiheadAttention uses it.
"""
from __future__ import annotations

import math

from .. import creation
from ..tensor import Tensor
from .functional import (
    _NEG_INF,
    _attention_with_weights,
    _check_dropout,
    _dropout_keep,
    linear,
    scaled_dot_product_attention,
)
from .layers import Linear
from .module import Module, Parameter


def _sees_a_key(mask: Tensor | None) -> bool:
    """Whether every query sees some key under the additive ``mask`` (None: no mask): some entry of each row
    above -inf."""
    return mask is None or bool((mask.array > _NEG_INF).any(axis=-1).all())


def _canonical_mask(mask: Tensor | None, name: str, like: Tensor) -> Tensor | None:
    """MHA's masks as additive floats: bool True -> -inf (masked out), False -> 0; floats kept (in like's dtype)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(mask).__name__}")
    if mask.dtype.kind == "b":
        return creation.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, _NEG_INF)
    if mask.dtype.kind == "f":
        return mask.to(dtype=like.dtype)
    raise TypeError(f"MultiheadAttention: only bool and floating point {name} are supported, got {mask.dtype}")


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameters, defaults and calling convention.

        [q; k; v] = [query W_q^T + b_q; key W_k^T + b_k; value W_v^T + b_v]   (in_proj_weight = [W_q; W_k; W_v])
        head_i = softmax(q_i k_i^T / sqrt(E / num_heads) + M) v_i
        out = Concat(head_1, ..., head_h) W_o^T + b_o                          (out_proj)

    Parameters: ``in_proj_weight (3E, E)`` (xavier_uniform_), ``in_proj_bias (3E,)`` (zeros),
    ``out_proj.weight (E, E)`` (Linear's default) and ``out_proj.bias (E,)`` (zeros).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (out, weights or None)``: inputs are (L, B, E)
    (or (B, L, E) with ``batch_first``, or unbatched (L, E)); ``key_padding_mask`` is (B, S);
    ``attn_mask`` is (L, S) or (B * num_heads, L, S). In BOTH masks a boolean **True means
    "masked out"** (PyTorch's MHA convention; the opposite of ``scaled_dot_product_attention``'s);
    float masks are added to the scores. ``weights`` are (B, L, S) averaged over heads, or
    (B, num_heads, L, S) with ``average_attn_weights=False``; they are taken after dropout, as
    PyTorch does.

    ``is_causal`` is only a hint here, exactly as in PyTorch: it requires ``attn_mask`` (else
    ``RuntimeError``), and then: if ``need_weights=False`` and no ``key_padding_mask`` is given,
    ``attn_mask`` is IGNORED and a causal (top-left, lower-triangular) mask is used instead;
    otherwise ``attn_mask`` is used as given and ``is_causal`` has no effect. So pass the
    causal mask itself as ``attn_mask``. (Unlike PyTorch, that ``attn_mask`` is shape-checked
    even when ignored.)

    Both settings of ``need_weights`` run one fused attention op; with True it also returns its
    weights (:func:`F._attention_with_weights`), which the averaging over heads then reads. A query
    whose every key is masked out gets NaN output and weights with ``need_weights=True`` (a plain
    softmax of all -inf, as PyTorch: such a mask takes the scores, softmax and product as separate
    ops), and output 0 with ``need_weights=False`` (the fused attention path, as PyTorch's;
    PyTorch's inference fast path would give NaN there).
    """

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, batch_first: bool = False
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = _check_dropout(dropout, "MultiheadAttention")
        self.batch_first = batch_first
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform_: fan_in = E, fan_out = 3E
        self.in_proj_weight = Parameter(creation.rand(3 * embed_dim, embed_dim) * (2 * bound) - bound)
        if bias:
            self.in_proj_bias = Parameter(creation.zeros(3 * embed_dim))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            self.out_proj.bias = Parameter(creation.zeros(embed_dim))

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        is_batched = self._check_inputs(query, key, value, key_padding_mask)
        self_attention = query is key and key is value
        if is_batched:
            if not self.batch_first:
                query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)  # (B, L, E)
        else:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)  # (1, L, E)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        B, L, E = query.shape
        S = key.shape[1]
        H, D = self.num_heads, self.head_dim
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "MultiheadAttention: is_causal is only a hint and needs attn_mask; pass the causal mask itself "
                "as attn_mask (True above the diagonal, e.g. tl.ones(L, L).triu(1) > 0)"
            )
        mask = self._combined_mask(attn_mask, key_padding_mask, query, B, L, S)  # (B, H or 1, L, S) or None
        use_causal = is_causal and key_padding_mask is None and not need_weights
        if use_causal:
            mask = None

        q, k, v = self._in_projection(query, key, value, self_attention)  # (B, L, E), (B, S, E), (B, S, E)
        q = q.reshape(B, L, H, D).transpose(1, 2)  # (B, H, L, D)
        k = k.reshape(B, S, H, D).transpose(1, 2)  # (B, H, S, D)
        v = v.reshape(B, S, H, D).transpose(1, 2)  # (B, H, S, D)
        dropout_p = self.dropout if self.training else 0.0

        weights = None
        if need_weights and _sees_a_key(mask):  # one fused op, as with need_weights=False
            out, weights = _attention_with_weights(q, k, v, mask, dropout_p)  # (B, H, L, D), (B, H, L, S)
        elif need_weights:  # a query that sees no key gets NaN (softmax of all -inf), as in PyTorch
            scores = (q @ k.mT) * (1.0 / math.sqrt(D))  # (B, H, L, S)
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(-1)
            if dropout_p > 0.0:
                weights = weights * _dropout_keep(weights.shape, dropout_p, weights)
            out = weights @ v  # (B, H, L, D)
        else:
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=use_causal)
        out = out.transpose(1, 2).reshape(B, L, E)  # (B, L, E)
        out = self.out_proj(out)

        if is_batched and not self.batch_first:
            out = out.transpose(0, 1)  # (L, B, E)
        elif not is_batched:
            out = out.squeeze(0)  # (L, E)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(1)  # (B, L, S)
            if not is_batched:
                weights = weights.squeeze(0)  # (L, S) or (H, L, S)
        return out, weights

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None) -> bool:
        """Shape checks as PyTorch's; returns whether the input is batched (3-D)."""
        w = self.in_proj_weight
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(t).__name__}")
            if t.device != w.device:
                raise RuntimeError(f"MultiheadAttention: {name} is on {t.device} but the parameters are on {w.device}")
            if t.dtype != w.dtype:
                raise TypeError(f"MultiheadAttention: {name} has dtype {t.dtype} but the parameters are {w.dtype}")
        if query.ndim not in (2, 3):
            raise ValueError(f"MultiheadAttention: query must be 2-D (L, E) or 3-D, got shape {query.shape}")
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"MultiheadAttention: query {query.shape}, key {key.shape} and value {value.shape} must all be "
                f"{query.ndim}-D"
            )
        if query.shape[-1] != self.embed_dim:
            raise ValueError(
                f"MultiheadAttention: expected embedding dimension {self.embed_dim}, got query of shape {query.shape}"
            )
        if key.shape != value.shape:
            raise ValueError(f"MultiheadAttention: key shape {key.shape} does not match value shape {value.shape}")
        if key.shape[-1] != self.embed_dim:
            raise ValueError(
                f"MultiheadAttention: expected embedding dimension {self.embed_dim}, got key of shape {key.shape}"
            )
        batched = query.ndim == 3
        if batched:
            b_axis = 0 if self.batch_first else 1
            if key.shape[b_axis] != query.shape[b_axis]:
                raise ValueError(
                    f"MultiheadAttention: query {query.shape} and key {key.shape} have different batch sizes "
                    f"(batch_first={self.batch_first})"
                )
        if key_padding_mask is not None:
            if batched:
                want = (key.shape[1], key.shape[0]) if not self.batch_first else key.shape[:2]
            else:
                want = key.shape[:1]
            if key_padding_mask.shape != want:
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask must have shape {want} for key of shape {key.shape}, "
                    f"got {key_padding_mask.shape}"
                )
        return batched

    def _combined_mask(
        self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, like: Tensor, B: int, L: int, S: int
    ) -> Tensor | None:
        """attn_mask and key_padding_mask as one additive mask broadcasting to (B, H, L, S)."""
        mask = _canonical_mask(attn_mask, "attn_mask", like)
        if mask is not None:
            if mask.ndim == 2:
                if mask.shape != (L, S):
                    raise RuntimeError(f"The shape of the 2D attn_mask is {mask.shape}, but should be {(L, S)}.")
                mask = mask.reshape(1, 1, L, S)  # (1, 1, L, S)
            elif mask.ndim == 3:
                want = (B * self.num_heads, L, S)
                if mask.shape != want:
                    raise RuntimeError(f"The shape of the 3D attn_mask is {mask.shape}, but should be {want}.")
                mask = mask.reshape(B, self.num_heads, L, S)  # (B, H, L, S)
            else:
                raise RuntimeError(f"attn_mask's dimension {mask.ndim} is not supported (shape {mask.shape})")
        padding = _canonical_mask(key_padding_mask, "key_padding_mask", like)
        if padding is not None:
            padding = padding.reshape(B, 1, 1, S)  # (B, 1, 1, S)
            mask = padding if mask is None else mask + padding
        return mask

    def _in_projection(
        self, query: Tensor, key: Tensor, value: Tensor, self_attention: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v = x W^T + b with in_proj_weight split in three; one GEMM for self-attention."""
        w, b = self.in_proj_weight, self.in_proj_bias
        if self_attention:
            q, k, v = linear(query, w, b).chunk(3, dim=-1)  # (B, L, 3E) -> (B, L, E) each
            return q, k, v
        E = self.embed_dim
        ws = (w[:E], w[E : 2 * E], w[2 * E :])
        bs = (None, None, None) if b is None else (b[:E], b[E : 2 * E], b[2 * E :])
        q, k, v = (linear(x, wi, bi) for x, wi, bi in zip((query, key, value), ws, bs))  # (B, *, E) each
        return q, k, v

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"batch_first={self.batch_first}"
        )
