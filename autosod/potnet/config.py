"""`PotnetConfig`: every default of docs/potnet.md and the ablation switches, in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLUSTERINGS", "EIGENSOLVERS", "PotnetConfig"]


CLUSTERINGS = ("dual", "kmeans", "spectral")
EIGENSOLVERS = ("eigh", "subspace")


@dataclass(frozen=True, kw_only=True)
class PotnetConfig:
    """Settings of the POTNet head (docs/potnet.md, steps 3-9).

    `clustering="kmeans"` or `"spectral"` lets one branch cluster all eligible pixels into
    k_low + k_high prototypes, so that every variant transports onto the same number of them.
    `transport=False` labels each pixel by its nearest prototype instead of the OT plan.
    """

    k_low: int = 4  # k-means prototypes (low-entropy branch); docs/quality.md tuning
    k_high: int = 3  # spectral prototypes (high-entropy branch) and embedding dimension
    split_quantile: float = 0.5  # q: eta_th is the q-quantile of eta within each image
    tau: float = 0.0  # pixels with max_c P_ic < tau join neither branch
    kmeans_iters: int = 20  # Lloyd iterations (both k-means calls)
    kmeans_restarts: int = 1  # k-means++ restarts per k-means call; the tightest run is kept
    spectral_knn: int | None = None  # None: dense affinity; k: keep k nearest neighbours per row
    eigensolver: str = "subspace"  # "eigh" (reference) or "subspace" (batched, fixed iterations)
    subspace_iters: int = 30  # iterations of the subspace solver
    subspace_oversample: int = 4  # extra columns carried by the subspace solver
    eps: float = 0.125  # entropic regularisation of the transport (potnet.md: 0.05; quality.md)
    sinkhorn_iters: int = 50  # log-domain Sinkhorn iterations
    temperature: float = 0.5  # t in the masses softmax(max_c cos / t) (potnet.md: 0.1)
    clustering: str = "dual"  # "dual" | "kmeans" | "spectral"
    transport: bool = True  # False: each pixel takes its nearest prototype's label
    mask_threshold: float = 0.5  # binary mask = soft >= threshold
    seed: int = 0  # seeds k-means++ and the subspace solver's start

    def __post_init__(self) -> None:
        for name in (
            "k_low", "k_high", "kmeans_iters", "kmeans_restarts", "subspace_iters",
            "sinkhorn_iters",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.subspace_oversample, int) or self.subspace_oversample < 0:
            raise ValueError(
                f"subspace_oversample must be an integer >= 0, got {self.subspace_oversample!r}"
            )
        if self.spectral_knn is not None and (
            not isinstance(self.spectral_knn, int) or self.spectral_knn < 1
        ):
            raise ValueError(
                f"spectral_knn must be None (dense) or an integer >= 1, got {self.spectral_knn!r}"
            )
        if not 0.0 < self.split_quantile < 1.0:
            raise ValueError(f"split_quantile must be in (0, 1), got {self.split_quantile!r}")
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {self.tau!r}")
        for name in ("eps", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold!r}")
        if self.clustering not in CLUSTERINGS:
            raise ValueError(
                f"clustering must be one of {', '.join(CLUSTERINGS)}, got {self.clustering!r}"
            )
        if self.eigensolver not in EIGENSOLVERS:
            raise ValueError(
                f"eigensolver must be one of {', '.join(EIGENSOLVERS)}, got {self.eigensolver!r}"
            )
        if not isinstance(self.transport, bool):
            raise ValueError(f"transport must be True or False, got {self.transport!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def num_prototypes(self) -> int:
        """K = k_low + k_high, the number of prototypes in every clustering mode."""
        return self.k_low + self.k_high
