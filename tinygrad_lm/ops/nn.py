"""Fused ops for ``nn``: one Function each, with a hand-written backward.

Each replaces a chain of small ops (and their saved temporaries) by a single
graph node whose gradient is computed in one pass. The class axis of the
losses is axis 1, as in PyTorch: inputs are ``(N, C)`` or ``(N, C, d1, ...)``
(an unbatched ``(C,)`` input gets a leading axis of 1 and loses it again).
The ``nn.functional`` wrappers check shapes, dtypes and index ranges; the ops
assume valid input.
"""
from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..fast import compiler as jit
from ..autograd import Function
from ..fast.blas import matmul


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# Up to this many rows, the embedding gradient is one GEMM with a one-hot matrix: for a
# character vocabulary that is several times faster than a scatter-add of the rows.
ONE_HOT_MAX_ROWS = 256


def _embedding_backward_kernel(ids: Any, g: Any, gw: Any) -> None:
    """dW[ids[n], :] += dy[n, :] for every position n: the rows of g (N, D) added into gw (V, D) in one pass.

    The ids are in [-V, V) (a negative one counts from the end): forward's ``take`` raised on any other,
    and this loop does not check them.
    """
    N, D = g.shape
    for n in range(N):
        i = ids[n]
        for j in range(D):
            gw[i, j] += g[n, j]


class Embedding(Function):
    """y[..., :] = W[ids[...], :]; dW[i] = sum of dy over the positions where ids == i (the padding row gets 0)

    With the ``jit`` extra (NumPy arrays), dW is one compiled pass that adds each row of dy into
    its id's row (:func:`_embedding_backward_kernel`). Otherwise, for small vocabularies
    dW = onehot(ids)^T dy, one matrix product; for large ones the rows of dy are scatter-added
    into dW. All accumulate repeated ids.
    """

    def forward(self, weight: Any, ids: Any, padding_idx: int | None = None) -> Any:
        self.ids, self.num_embeddings, self.padding_idx = ids, weight.shape[0], padding_idx
        return self.xp.take(weight, ids, axis=0)  # ids.shape + (D,)

    def backward(self, g: Any) -> tuple[Any, None]:
        dim = g.shape[-1]
        xp, ids, rows = self.xp, self.ids.reshape(-1), self.num_embeddings
        g2 = g.reshape(-1, dim)  # (N, D)
        kernel = jit.compiled(_embedding_backward_kernel, g2)
        if kernel is not None:
            gw = xp.zeros((rows, dim), dtype=g.dtype)  # (V, D)
            kernel(ids, xp.ascontiguousarray(g2), gw)
        elif rows <= ONE_HOT_MAX_ROWS:
            one_hot = xp.zeros((rows, ids.size), dtype=g.dtype)  # (V, N)
            one_hot[ids, xp.arange(ids.size)] = 1
            gw = matmul(one_hot, g2)  # (V, D)
        else:
            gw = xp.zeros((rows, dim), dtype=g.dtype)
            backend.scatter_add(gw, ids, g2)  # repeated ids accumulate
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw, None


# LayerNorm's backward walks the rows in blocks of about this many bytes per (rows, D) array, so
# that a block's temporaries stay in the CPU's L2 cache across the passes that use them.
LAYER_NORM_BLOCK_BYTES = 1 << 18


def _layer_norm_forward_kernel(x: Any, weight: Any, bias: Any, eps: float, y: Any, mean: Any, rstd: Any) -> None:
    """LayerNorm of each row of x (M, D) into y, one row at a time, and the row's mean and rstd (M,):
    mu = mean(x), var = mean((x - mu)^2), rstd = 1 / sqrt(var + eps), y = (x - mu) rstd w + b.
    ``weight`` and ``bias`` (D,) may each be None."""
    M, D = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    inv_d = one / x.dtype.type(max(D, 1))
    eps_ = x.dtype.type(eps)
    for i in range(M):
        total = zero
        for j in range(D):
            total += x[i, j]
        mu = total * inv_d
        squares = zero
        for j in range(D):
            x_c = x[i, j] - mu
            squares += x_c * x_c
        r = one / math.sqrt(squares * inv_d + eps_)
        mean[i], rstd[i] = mu, r
        for j in range(D):
            y_ij = (x[i, j] - mu) * r  # x_hat
            if weight is not None:
                y_ij *= weight[j]
            if bias is not None:
                y_ij += bias[j]
            y[i, j] = y_ij


def _layer_norm_backward_kernel(x: Any, mean: Any, rstd: Any, weight: Any, g: Any, dx: Any, dw: Any, db: Any) -> None:
    """LayerNorm's backward, one row of x (M, D) at a time, from the forward's mean and rstd (M,).

    With x_hat = (x - mu) rstd and g_hat = g w (g if ``weight`` is None): a first pass over the row sums
    g_hat and g_hat x_hat and adds g x_hat and g into the accumulators dw and db (D,); a second pass
    writes dx = (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)) rstd.
    """
    M, D = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    inv_d = one / x.dtype.type(max(D, 1))
    for i in range(M):
        mu, r = mean[i], rstd[i]
        sum_g_hat = zero
        sum_g_hat_x_hat = zero
        for j in range(D):
            x_hat = (x[i, j] - mu) * r
            g_hat = g[i, j]
            dw[j] += g_hat * x_hat
            db[j] += g_hat
            if weight is not None:
                g_hat *= weight[j]
            sum_g_hat += g_hat
            sum_g_hat_x_hat += g_hat * x_hat
        mean_g_hat = sum_g_hat * inv_d
        mean_g_hat_x_hat = sum_g_hat_x_hat * inv_d
        for j in range(D):
            x_hat = (x[i, j] - mu) * r
            g_hat = g[i, j]
            if weight is not None:
                g_hat *= weight[j]
            dx[i, j] = (g_hat - mean_g_hat - x_hat * mean_g_hat_x_hat) * r


class LayerNorm(Function):
    """y = x_hat w + b, x_hat = (x - mean) rstd, rstd = 1 / sqrt(var + eps), over the last ``ndim`` dims.

    With g_hat = dy w: dx = rstd (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)),
    dw = sum(dy x_hat), db = sum(dy) (sums over the leading, not normalised, dims).

    The NumPy path works on a (rows, D) view with x_c = x - mean and few passes over memory.
    Forward writes y once, as x_c, and scales it in place by rstd, w and b; it saves only mean
    and rstd (x is kept by the graph anyway), not x_hat. Backward rebuilds x_c one row block at
    a time (``LAYER_NORM_BLOCK_BYTES``; one block off the CPU) and turns every sum against a
    vector into a matrix-vector product, with p = dy x_c: mean = x 1/D, db = 1^T dy,
    dw = rstd^T p, mean(g_hat) = dy w/D, mean(g_hat x_hat) = rstd p w/D, so that
    dx = rstd g_hat - (rstd mean(g_hat) + rstd^3 (p w/D) x_c).

    With the ``jit`` extra (NumPy arrays), each direction is instead one compiled loop over the rows,
    the equations above written out element by element (:func:`_layer_norm_forward_kernel`,
    :func:`_layer_norm_backward_kernel`): a row of D numbers stays in the L1 cache while two or three
    short passes over it do all the work, instead of a dozen passes of NumPy calls over all rows.
    The kernels take C-contiguous arrays: a non-contiguous x or dy is copied first. Both paths save
    the same mean and rstd (M, 1), so a backward may take the other path than its forward.
    """

    def forward(self, x: Any, weight: Any = None, bias: Any = None, ndim: int = 1, eps: float = 1e-5) -> Any:
        xp = self.xp
        lead, norm_shape = x.shape[: x.ndim - ndim], x.shape[x.ndim - ndim :]
        x2 = x.reshape(_prod(lead), _prod(norm_shape))  # (M, D)
        self.weight = None if weight is None else weight.reshape(-1)
        self.shape, self.norm_shape = x.shape, norm_shape
        kernel = jit.compiled(_layer_norm_forward_kernel, *(a for a in (x2, weight, bias) if a is not None))
        if kernel is not None:
            x2 = xp.ascontiguousarray(x2)
            self.weight = None if weight is None else xp.ascontiguousarray(self.weight)
            b = None if bias is None else xp.ascontiguousarray(bias.reshape(-1))
            out = xp.empty_like(x2)  # (M, D)
            self.x2, self.mean = x2, xp.empty((x2.shape[0], 1), dtype=x.dtype)  # (M, 1)
            self.rstd = xp.empty_like(self.mean)  # (M, 1)
            kernel(x2, self.weight, b, eps, out, self.mean[:, 0], self.rstd[:, 0])
            return out.reshape(x.shape)
        inv_d = 1.0 / max(x2.shape[1], 1)
        mean = matmul(x2, xp.full((x2.shape[1], 1), inv_d, dtype=x.dtype))  # (M, 1)
        out = xp.subtract(x2, mean)  # x_c
        var = xp.einsum("ij,ij->i", out, out)[:, None]  # (M, 1), biased as PyTorch
        var *= inv_d
        var += eps
        rstd = xp.reciprocal(xp.sqrt(var, out=var), out=var)
        out *= rstd  # x_hat
        if weight is not None:
            out *= self.weight
        if bias is not None:
            out += bias.reshape(-1)
        self.x2, self.mean, self.rstd = x2, mean, rstd
        return out.reshape(x.shape)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        xp, x2, w, (m, d) = self.xp, self.x2, self.weight, self.x2.shape
        need_x, need_w, need_b = self.needs_grad
        g2 = g.reshape(m, d)  # (M, D)
        kernel = jit.compiled(_layer_norm_backward_kernel, *(a for a in (x2, w, g2) if a is not None))
        if kernel is not None:
            x2 = xp.ascontiguousarray(x2)
            w = None if w is None else xp.ascontiguousarray(w)
            dx = xp.empty_like(x2)  # (M, D)
            dw, db = xp.zeros(d, dtype=x2.dtype), xp.zeros(d, dtype=x2.dtype)  # (D,); it makes all three, always
            kernel(x2, self.mean[:, 0], self.rstd[:, 0], w, xp.ascontiguousarray(g2), dx, dw, db)
            return (dx.reshape(self.shape) if need_x else None,
                    dw.reshape(self.norm_shape) if need_w else None,
                    db.reshape(self.norm_shape) if need_b else None)
        w_over_d = xp.full((d, 1), 1.0 / max(d, 1), dtype=x2.dtype) if w is None else (w / max(d, 1))[:, None]
        rows = _layer_norm_block_rows(self.device, m, d * x2.itemsize)
        x_c_block = xp.empty((rows, d), dtype=x2.dtype)
        p_block = xp.empty((rows, d), dtype=x2.dtype)
        ones = xp.ones((1, rows), dtype=x2.dtype)
        gx: Any = xp.empty_like(x2) if need_x else None
        gw = xp.zeros((1, d), dtype=x2.dtype) if need_w else None
        gb = xp.zeros((1, d), dtype=x2.dtype) if need_b else None
        for start in range(0, m, rows):
            block = slice(start, start + rows)
            dy, rstd = g2[block], self.rstd[block]  # (n, D), (n, 1)
            n = dy.shape[0]
            if need_b:
                gb += matmul(ones[:, :n], dy)
            if not (need_x or need_w):
                continue
            x_c = xp.subtract(x2[block], self.mean[block], out=x_c_block[:n])
            p = xp.multiply(dy, x_c, out=p_block[:n])
            if need_w:
                gw += matmul(rstd.T, p)
            if need_x:
                shift = matmul(dy, w_over_d)  # (n, 1), mean(g_hat)
                shift *= rstd
                scale = matmul(p, w_over_d)  # (n, 1), mean(g_hat x_c)
                scale *= rstd**3
                x_c *= scale
                x_c += shift  # rstd mean(g_hat) + rstd x_hat mean(g_hat x_hat)
                dx = gx[block]  # (n, D)
                if w is None:
                    xp.multiply(dy, rstd, out=dx)
                else:
                    xp.multiply(dy, w, out=dx)
                    dx *= rstd
                dx -= x_c
        return (None if gx is None else gx.reshape(self.shape),
                None if gw is None else gw.reshape(self.norm_shape),
                None if gb is None else gb.reshape(self.norm_shape))


def _layer_norm_block_rows(device: str, rows: int, row_bytes: int) -> int:
    """Rows per block of LayerNorm's backward: ``LAYER_NORM_BLOCK_BYTES`` worth on the CPU, all of them elsewhere."""
    if device != "cpu":
        return max(rows, 1)
    return max(1, min(rows, LAYER_NORM_BLOCK_BYTES // max(row_bytes, 1)))


class Dropout(Function):
    """y = x m / (1 - p) with m ~ Bernoulli(1 - p) per element (inverted dropout); dx = dy m / (1 - p)"""

    def forward(self, x: Any, p: float = 0.5) -> Any:
        if p >= 1.0:
            self.mask = self.xp.zeros(x.shape, dtype=x.dtype)
            return self.mask.copy()
        u = backend.generator(self.device).random(x.shape, dtype="float32")
        mask = (u >= p).astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
        self.mask = mask
        return x * mask

    def backward(self, g: Any) -> Any:
        return g * self.mask


def _class_index(xp: Any, target: Any) -> tuple[Any, ...]:
    """The index tuple that picks x[n, target[n, i..], i..] from x of shape (N, C, d1, ...)."""
    k = target.ndim
    index = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (k - 1 - i)) for i, n in enumerate(target.shape)]
    index.insert(1, target)
    return tuple(index)


def _class_shape(x_ndim: int, c: int) -> tuple[int, ...]:
    """The shape that broadcasts a per-class vector (C,) against x of shape (N, C, d1, ...)."""
    return (1, c) + (1,) * (x_ndim - 2)


def _nan_if_zero(xp: Any, denom: Any) -> Any:
    """``denom`` with 0 replaced by NaN, so that 0/0 means NaN (as in PyTorch) without a division warning."""
    return xp.where(denom == 0, float("nan"), denom).astype(denom.dtype, copy=False)


def _row_grad(xp: Any, g: Any, reduction: str, valid: Any, denom: Any) -> Any:
    """d loss / d loss_n for every element n of the unreduced loss, zero where the target is ignored."""
    if reduction == "none":
        g = g.reshape(valid.shape)
    elif reduction == "mean":
        g = g / denom
    return xp.where(valid, g, 0).astype(g.dtype, copy=False)


def _reduce(xp: Any, loss: Any, reduction: str, denom: Any, shape: tuple[int, ...]) -> Any:
    if reduction == "none":
        return loss.reshape(shape)
    total = xp.asarray(loss.sum())
    return total / denom if reduction == "mean" else total


# CrossEntropy's forward kernel takes this many rows at a time (see its docstring).
CROSS_ENTROPY_BLOCK_ROWS = 32


def _cross_entropy_forward_kernel(
    x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: float, loss: Any, m: Any, log_s: Any, w_t: Any
) -> None:
    """Softmax cross-entropy of each row of x (N, C), as :class:`CrossEntropy` states it.

    m_n = max_c x_nc (0 where that is not finite), log_s_n = log sum_c e^(x_nc - m_n), picked_n = x_{n,t_n} - m_n,
    w_t_n = w_{t_n}, loss_n = w_t_n (log_s_n - picked_n); with label smoothing eps the loss is
    (1 - eps) loss_n + eps / C (sum_c w_c log_s_n - sum_c w_c (x_nc - m_n)). Rows with valid_n false
    get loss_n = 0 and w_t_n = 0. Writes loss, m, log_s, w_t (N,); ``weight`` (C,) is all ones when none is given.

    The rows go in blocks of ``CROSS_ENTROPY_BLOCK_ROWS``: a first pass over the block finds each row's m_n
    and picked_n, a second one does the rest, so that a row's exponentials never wait for its own maximum
    (twice as fast as row by row). picked_n waits in loss[n] between the passes: kept in memory, it stays
    x_t - m, which a compiler free to reorder sums would otherwise turn log_s - (x_t - m) into
    (log_s + m) - x_t, where log_s is lost next to a large m.
    """
    N, C = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    eps_, w_sum_ = x.dtype.type(eps), x.dtype.type(w_sum)
    spread = eps_ / x.dtype.type(C)
    for start in range(0, N, CROSS_ENTROPY_BLOCK_ROWS):
        stop = min(start + CROSS_ENTROPY_BLOCK_ROWS, N)
        for n in range(start, stop):
            m_n = x[n, 0]
            for c in range(1, C):
                if x[n, c] > m_n:
                    m_n = x[n, c]
            if not math.isfinite(m_n):
                m_n = zero
            m[n] = m_n
            loss[n] = x[n, target[n]] - m_n if valid[n] else zero  # picked_n
        for n in range(start, stop):
            m_n = m[n]
            s = zero
            for c in range(C):
                s += jit.exp(x[n, c] - m_n)
            log_s_n = math.log(s)
            log_s[n] = log_s_n
            if not valid[n]:
                w_t[n] = zero
                continue
            w_t[n] = weight[target[n]]
            loss_n = w_t[n] * (log_s_n - loss[n])
            if eps_ > zero:
                smooth_sum = zero
                for c in range(C):
                    smooth_sum += weight[c] * (x[n, c] - m_n)
                loss_n = (one - eps_) * loss_n + spread * (w_sum_ * log_s_n - smooth_sum)
            loss[n] = loss_n


def _cross_entropy_backward_kernel(
    x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: float,
    m: Any, log_s: Any, w_t: Any, row: Any, dx: Any,
) -> None:
    """dx (N, C) of softmax cross-entropy, one row at a time, from the forward's m, log_s and w_t (N,).

    With r_n = d loss / d loss_n (0 where the target is ignored), p_nc = e^((x_nc - m_n) - log_s_n) and
    coef_n = (1 - eps) w_t_n + eps / C sum_c w_c: dx_nc = coef_n r_n p_nc - (1 - eps) w_t_n r_n [c = t_n]
    - eps / C r_n w_c (the last term only with label smoothing). A first pass writes x - m into dx and
    the second reads it back: a compiler free to reorder sums would otherwise compute
    e^(x - (m + log_s)), where log_s is lost next to a large m.
    """
    N, C = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    eps_, w_sum_ = x.dtype.type(eps), x.dtype.type(w_sum)
    spread = eps_ / x.dtype.type(C)
    for n in range(N):
        r = row[n]
        a = ((one - eps_) * w_t[n] + spread * w_sum_) * r  # coef_n r_n
        m_n, log_s_n = m[n], log_s[n]
        for c in range(C):
            dx[n, c] = x[n, c] - m_n
        for c in range(C):
            dx[n, c] = jit.exp(dx[n, c] - log_s_n) * a
        if valid[n]:
            dx[n, target[n]] -= (one - eps_) * w_t[n] * r
        if eps_ > zero:
            for c in range(C):
                dx[n, c] -= spread * r * weight[c]


class CrossEntropy(Function):
    """Softmax cross-entropy from logits x and class indices t, label smoothing eps, class weights w.

    With q_n = (1 - eps) onehot(t_n) + eps / C and p_n = softmax(x_n):
    loss_n = sum_c w_c q_nc (logsumexp(x_n) - x_nc) = -sum_c w_c q_nc log p_nc (0 where t_n = ignore_index),
    d loss_n / d x_n = (sum_c w_c q_nc) p_n - w q_n.

    With the ``jit`` extra, a NumPy input of shape (N, C) (or (C,)) takes two compiled loops over the rows,
    these equations element by element (:func:`_cross_entropy_forward_kernel`,
    :func:`_cross_entropy_backward_kernel`): a row stays in the L1 cache for its max, its sum of
    exponentials and its gradient, instead of a dozen NumPy passes over the (N, C) logits and their
    temporaries. Other layouts, (N, C, d1, ...), take the NumPy path. Both paths save the same
    m and log_s (N, 1, d1, ...), so a backward may take the other path than its forward.
    """

    def forward(
        self,
        x: Any,
        target: Any,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> Any:
        xp = self.xp
        out_shape = target.shape
        self.unbatched = x.ndim == 1
        if self.unbatched:
            x, target = x[None], target[None]  # (1, C), (1,)
        c = x.shape[1]
        eps = label_smoothing
        valid = target != ignore_index  # (N, d1, ...)
        w_sum = float(c) if weight is None else weight.sum()
        self.target, self.valid, self.weight, self.w_sum, self.eps, self.reduction = (
            target, valid, weight, w_sum, eps, reduction
        )
        kernel = self._kernel(_cross_entropy_forward_kernel, x)
        if kernel is not None:
            x = xp.ascontiguousarray(x)
            m, log_s = xp.empty((x.shape[0], 1), dtype=x.dtype), xp.empty((x.shape[0], 1), dtype=x.dtype)  # (N, 1)
            loss, w_t = xp.empty(x.shape[0], dtype=x.dtype), xp.empty(x.shape[0], dtype=x.dtype)  # (N,)
            kernel(x, target, valid, self._class_weights(x), eps, float(w_sum), loss, m[:, 0], log_s[:, 0], w_t)
        else:
            loss, m, log_s, w_t = self._forward_numpy(x, target, valid, weight, eps, w_sum)
        denom = _nan_if_zero(xp, xp.asarray(w_t.sum())) if reduction == "mean" else None
        self.x, self.m, self.log_s, self.w_t, self.denom = x, m, log_s, w_t, denom
        return _reduce(xp, loss, reduction, denom, out_shape)

    def _forward_numpy(self, x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: Any) -> tuple[Any, ...]:
        """loss (N, d1, ...), m and log_s (N, 1, d1, ...), w_t (N, d1, ...) with array operations (any layout)."""
        xp, c = self.xp, x.shape[1]
        index = _class_index(xp, xp.where(valid, target, 0))
        m = x.max(axis=1, keepdims=True)  # (N, 1, d1, ...)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        e = x - m
        picked = e[index]  # (N, d1, ...): x_t - m
        wb = None if weight is None else weight.reshape(_class_shape(x.ndim, c))
        if eps > 0:
            smooth_sum = (e.sum(axis=1) if wb is None else (e * wb).sum(axis=1))  # sum_c w_c (x_c - m)
        xp.exp(e, out=e)
        log_s = xp.log(e.sum(axis=1, keepdims=True))  # (N, 1, d1, ...)
        del e
        w_t = valid.astype(x.dtype) if weight is None else xp.where(valid, weight[index[1]], 0)  # (N, d1, ...)
        w_t = w_t.astype(x.dtype, copy=False)
        loss = w_t * (log_s[:, 0] - picked)  # (N, d1, ...)
        if eps > 0:
            smooth = w_sum * log_s[:, 0] - smooth_sum
            loss = (1.0 - eps) * loss + (eps / c) * smooth
        loss = xp.where(valid, loss, 0).astype(x.dtype, copy=False)  # 0 for an ignored target, even if x is -inf
        return loss, m, log_s, w_t

    def _kernel(self, kernel: Any, x: Any) -> Any:
        """The compiled ``kernel`` for logits x of shape (N, C), C > 0, else None (the NumPy path)."""
        if x.ndim != 2 or x.shape[1] == 0:
            return None
        return jit.compiled(kernel, *(a for a in (x, self.weight) if a is not None))

    def _class_weights(self, x: Any) -> Any:
        """The class weights (C,) for the kernels: the given ones, else all ones."""
        if self.weight is None:
            return self.xp.ones(x.shape[1], dtype=x.dtype)
        return self.xp.ascontiguousarray(self.weight)

    def backward(self, g: Any) -> tuple[Any, None]:
        xp, eps, x = self.xp, self.eps, self.x
        c = x.shape[1]
        row = _row_grad(xp, g, self.reduction, self.valid, self.denom)  # (N, d1, ...)
        kernel = self._kernel(_cross_entropy_backward_kernel, x)
        if kernel is not None:
            x = xp.ascontiguousarray(x)
            p = xp.empty(x.shape, dtype=x.dtype)  # (N, C)
            kernel(x, self.target, self.valid, self._class_weights(x), eps, float(self.w_sum),
                   self.m[:, 0], self.log_s[:, 0], self.w_t, xp.ascontiguousarray(row), p)
            return (p[0] if self.unbatched else p), None
        p = x - self.m
        p -= self.log_s
        xp.exp(p, out=p)  # softmax, (N, C, d1, ...)
        coef = (1.0 - eps) * self.w_t + (eps / c) * self.w_sum  # sum_c w_c q_nc
        p *= (coef * row)[:, None]
        p[_class_index(xp, xp.where(self.valid, self.target, 0))] -= (1.0 - eps) * self.w_t * row
        if eps > 0:
            spread = row[:, None] * (eps / c)  # (N, 1, d1, ...)
            p -= spread if self.weight is None else spread * self.weight.reshape(_class_shape(x.ndim, c))
        return (p[0] if self.unbatched else p), None


class SoftCrossEntropy(Function):
    """Cross-entropy from logits x and class probabilities y, label smoothing eps, class weights w.

    With q = (1 - eps) y + eps / C: loss_n = -sum_c w_c q_nc log softmax(x_n)_c;
    d loss_n / d x_n = (sum_c w_c q_nc) softmax(x_n) - w q_n, d loss_n / d y_nc = -(1 - eps) w_c log softmax(x_n)_c.
    """

    def forward(self, x: Any, y: Any, weight: Any = None, reduction: str = "mean", label_smoothing: float = 0.0) -> Any:
        xp = self.xp
        self.unbatched = x.ndim == 1
        if self.unbatched:
            x, y = x[None], y[None]  # (1, C)
        c = x.shape[1]
        eps = label_smoothing
        m = x.max(axis=1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        logp = x - m
        logp -= xp.log(xp.exp(logp).sum(axis=1, keepdims=True))  # (N, C, d1, ...)
        q = y if eps == 0 else (1.0 - eps) * y + eps / c
        wb = None if weight is None else weight.reshape(_class_shape(x.ndim, c))
        wq = q if wb is None else q * wb
        loss = -(wq * logp).sum(axis=1)  # (N, d1, ...)
        rows = loss.size
        self.logp, self.wq, self.wb, self.eps, self.reduction, self.rows = logp, wq, wb, eps, reduction, rows
        if reduction == "none":
            return loss[0] if self.unbatched else loss
        total = xp.asarray(loss.sum())
        return total / rows if reduction == "mean" else total

    def backward(self, g: Any) -> tuple[Any, Any]:
        xp = self.xp
        logp, wq = self.logp, self.wq
        if self.reduction == "none":
            row = g.reshape(logp.shape[:1] + logp.shape[2:])[:, None]  # (N, 1, d1, ...)
        else:
            row = g / self.rows if self.reduction == "mean" else g
        gx = gy = None
        if self.needs_grad[0]:
            gx = xp.exp(logp) * wq.sum(axis=1, keepdims=True)
            gx -= wq
            gx *= row
        if self.needs_grad[1]:
            gy = -(1.0 - self.eps) * logp * row
            if self.wb is not None:
                gy *= self.wb
        if self.unbatched:
            gx = None if gx is None else gx[0]
            gy = None if gy is None else gy[0]
        return gx, gy


class NLLLoss(Function):
    """loss_n = -w_{t_n} x_{n, t_n} (0 where t_n = ignore_index); d loss_n / d x_nc = -w_c [c = t_n]"""

    def forward(
        self, x: Any, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> Any:
        xp = self.xp
        out_shape = target.shape
        self.unbatched, self.shape = x.ndim == 1, x.shape
        if self.unbatched:
            x, target = x[None], target[None]  # (1, C), (1,)
        valid = target != ignore_index
        t = xp.where(valid, target, 0)
        index = _class_index(xp, t)
        w_t = valid.astype(x.dtype) if weight is None else xp.where(valid, weight[t], 0).astype(x.dtype, copy=False)
        loss = -w_t * x[index]  # (N, d1, ...)
        denom = _nan_if_zero(xp, xp.asarray(w_t.sum())) if reduction == "mean" else None
        self.x_shape, self.index, self.valid, self.w_t, self.reduction, self.denom = (
            x.shape, index, valid, w_t, reduction, denom
        )
        return _reduce(xp, loss, reduction, denom, out_shape)

    def backward(self, g: Any) -> tuple[Any, None]:
        xp = self.xp
        row = _row_grad(xp, g, self.reduction, self.valid, self.denom)
        gx = xp.zeros(self.x_shape, dtype=g.dtype)
        gx[self.index] = -self.w_t * row
        return (gx.reshape(self.shape) if self.unbatched else gx), None
