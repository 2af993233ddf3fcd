"""Training heads on top of speaker embeddings.

* :class:`DINOHead`: DINO projection MLP -> L2-normalised bottleneck -> weight-normalised
  prototype layer (cosine logits when the prototype norms are fixed to 1).
* :class:`AAMSoftmax`: additive angular margin (ArcFace) classifier over (pseudo-)speaker
  classes, with a boolean ``active`` mask so empty clusters can be switched off.

Both are plain modules (parameters and buffers only, no hooks or parametrizations), so
``copy.deepcopy``, ``state_dict`` round trips and parameter-wise EMA work unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DINOHead", "NormalizedLinear", "AAMSoftmax"]


class NormalizedLinear(nn.Module):
    """Weight-normalised linear layer without bias: ``W = g * v / ||v||`` row-wise.

    ``weight_v`` is ``(out_features, in_features)``; ``weight_g`` is ``(out_features, 1)``,
    initialised to 1. With ``fix_norm`` ``weight_g`` is frozen (``requires_grad=False``) and not
    used, so every row of ``W`` has norm 1 whatever an optimiser or an EMA does to the parameters;
    it stays in the state_dict so both variants load each other's checkpoints.
    """

    def __init__(self, in_features: int, out_features: int, fix_norm: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.trunc_normal_(self.weight_v, std=0.02)
        self.weight_g = nn.Parameter(torch.ones(out_features, 1), requires_grad=not fix_norm)

    @property
    def fix_norm(self) -> bool:
        return not self.weight_g.requires_grad

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fix_norm={self.fix_norm}"

    def weight(self) -> torch.Tensor:
        """The effective weight ``g * v / ||v||`` (just ``v / ||v||`` when the norm is fixed)."""
        direction = F.normalize(self.weight_v, dim=1)
        return direction if self.fix_norm else self.weight_g * direction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight())


class DINOHead(nn.Module):
    """DINO projection head.

    ``n_layers`` linear layers (``in_dim -> hidden_dim -> ... -> bottleneck_dim``; BN (optional)
    and GELU after every hidden layer), L2 normalisation, then a weight-normalised, bias-free
    layer to ``n_prototypes``. With ``norm_last_layer`` the prototype norms stay 1, so the
    output is the cosine between the bottleneck vector and each prototype, in ``[-1, 1]``.
    ``(B, in_dim) -> (B, n_prototypes)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_prototypes: int = 65536,
        n_layers: int = 3,
        use_bn: bool = True,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("bottleneck_dim", bottleneck_dim),
                        ("n_prototypes", n_prototypes), ("n_layers", n_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"DINOHead: {name} must be an integer >= 1, got {v!r}")
        self.in_dim = in_dim
        self.n_prototypes = n_prototypes
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < n_layers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = NormalizedLinear(bottleneck_dim, n_prototypes, fix_norm=norm_last_layer)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the prototype layer (freeze or zero their grads in epoch 1)."""
        return [p for p in self.last_layer.parameters() if p.requires_grad]

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised bottleneck vectors ``(B, bottleneck_dim)``."""
        return F.normalize(self.mlp(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"DINOHead: expected (batch, {self.in_dim}) input, got shape {tuple(x.shape)}")
        return self.last_layer(self.bottleneck(x))


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace) classifier.

    ``forward(emb, labels=None)`` returns float32 logits ``scale * cos(theta_j)``; when ``labels``
    are given the labelled class uses ``scale * cos(theta_y + margin)`` instead. Past
    ``theta_y > pi - margin`` (where ``cos(theta + m)`` stops decreasing) it falls back to
    ``cos(theta_y) - margin * sin(margin)`` (``easy_margin``: no margin while ``cos <= 0``).

    The boolean buffer ``active`` (all True at start) switches classes off: inactive classes
    get ``-inf`` logits, so they never win an argmax and get zero softmax probability. Logits
    are computed in float32 with autocast off, which keeps ``-inf`` and the margin exact.
    A label that points at an inactive class raises ``ValueError``.
    """

    def __init__(self, in_dim: int, n_classes: int, scale: float = 32.0, margin: float = 0.2,
                 easy_margin: bool = False) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 1:
            raise ValueError(f"AAMSoftmax: in_dim and n_classes must be >= 1, got {in_dim}, {n_classes}")
        if not scale > 0:
            raise ValueError(f"AAMSoftmax: scale must be > 0, got {scale}")
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"AAMSoftmax: margin must be in [0, pi/2), got {margin}")
        self.in_dim = in_dim
        self.n_classes = n_classes
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)
        self.weight = nn.Parameter(torch.empty(n_classes, in_dim))
        nn.init.xavier_normal_(self.weight)
        self.register_buffer("active", torch.ones(n_classes, dtype=torch.bool))

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, n_classes={self.n_classes}, scale={self.scale}, "
                f"margin={self.margin}, easy_margin={self.easy_margin}")

    @property
    def n_active(self) -> int:
        """Number of classes still switched on."""
        return int(self.active.sum())

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """Float32 cosine between each embedding and each class weight, ``(B, n_classes)``;
        no scale, no margin and no masking (combine with ``active`` yourself)."""
        if emb.dim() != 2 or emb.shape[1] != self.in_dim:
            raise ValueError(f"AAMSoftmax: expected (batch, {self.in_dim}) embeddings, got shape {tuple(emb.shape)}")
        with torch.autocast(device_type=emb.device.type, enabled=False):
            return F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1)).clamp(-1.0, 1.0)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(emb)
        if labels is not None:
            labels = labels.to(device=cos.device, dtype=torch.long).view(-1)
            if labels.shape[0] != cos.shape[0]:
                raise ValueError(f"AAMSoftmax: {labels.shape[0]} labels for {cos.shape[0]} embeddings")
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
                raise ValueError(
                    f"AAMSoftmax: labels must be in [0, {self.n_classes}), got range "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
            off = ~self.active[labels]
            if bool(off.any()):
                bad = sorted(set(labels[off].tolist()))
                raise ValueError(f"AAMSoftmax: labels point at inactive (masked) classes {bad[:10]}")
            c = cos.gather(1, labels.unsqueeze(1))
            sin = (1.0 - c.square()).clamp_min(0.0).sqrt()
            m = self.margin
            phi = c * math.cos(m) - sin * math.sin(m)  # cos(theta + m)
            if self.easy_margin:
                phi = torch.where(c > 0, phi, c)
            else:
                phi = torch.where(c > math.cos(math.pi - m), phi, c - math.sin(math.pi - m) * m)
            cos = cos.scatter(1, labels.unsqueeze(1), phi)
        logits = self.scale * cos
        return logits.masked_fill(~self.active, float("-inf"))

    @torch.no_grad()
    def mask_classes(self, keep: torch.Tensor | np.ndarray) -> int:
        """Switch off the classes where ``keep`` is False: ``active = active & keep``.

        Masking only accumulates (a class switched off stays off); use :meth:`reset_mask` to
        switch every class back on. Returns the number of active classes.
        """
        keep = torch.as_tensor(keep, device=self.active.device)
        if keep.dtype != torch.bool or keep.shape != self.active.shape:
            raise ValueError(
                f"AAMSoftmax.mask_classes: keep must be a bool tensor of shape ({self.n_classes},), "
                f"got dtype {keep.dtype} shape {tuple(keep.shape)}"
            )
        self.active &= keep
        return self.n_active

    @torch.no_grad()
    def reset_mask(self) -> None:
        """Switch every class back on."""
        self.active.fill_(True)

    @torch.no_grad()
    def set_active(self, active: torch.Tensor) -> int:
        """Make exactly the classes where ``active`` is True active (classes may come back, as
        SSRL's recomputed cluster set needs). Returns the number of active classes."""
        active = torch.as_tensor(active, device=self.active.device)
        if active.dtype != torch.bool or active.shape != self.active.shape:
            raise ValueError(
                f"AAMSoftmax.set_active: active must be a bool tensor of shape ({self.n_classes},), "
                f"got dtype {active.dtype} shape {tuple(active.shape)}"
            )
        self.active.copy_(active)
        return self.n_active

    @torch.no_grad()
    def init_from_centroids(self, centroids: torch.Tensor | np.ndarray) -> None:
        """Copy L2-normalised ``centroids`` ``(n_classes, in_dim)`` into the class weights."""
        c = centroids if isinstance(centroids, torch.Tensor) else torch.from_numpy(np.asarray(centroids))
        if c.shape != self.weight.shape:
            raise ValueError(
                f"AAMSoftmax.init_from_centroids: centroids have shape {tuple(c.shape)}, "
                f"expected ({self.n_classes}, {self.in_dim})"
            )
        c = c.to(device=self.weight.device, dtype=torch.float32)
        if not bool(torch.isfinite(c).all()):
            raise ValueError("AAMSoftmax.init_from_centroids: centroids contain NaN or inf")
        self.weight.copy_(F.normalize(c, dim=1).to(self.weight.dtype))
