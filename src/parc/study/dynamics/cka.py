"""Representation similarity of two sets of hidden states: debiased linear CKA and effective rank.

Linear CKA of X (n x p) and Y (n x q), the same n examples (here: tokens of fixed held-out sequences), uses
Song et al. (2012)'s unbiased HSIC estimator of the Gram matrices K = X X^T, L = Y Y^T with zeroed diagonals
(K~, L~), as Nguyen, Raghu & Kornblith (2021) debias CKA:

    HSIC_1(K, L) = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))
    CKA = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))

Never forming an n x n matrix: every term is a sum over examples of feature-space quantities
(tr(K~L~) = ||X^T Y||_F^2 - sum_i |x_i|^2 |y_i|^2, K~1 = X (X^T 1) - diag K, ...), so the cost is one
p x q product, O(n p q), in float64. CKA is invariant to orthogonal transforms and isotropic scaling of
either side, and CKA(X, X) = 1.

Effective rank (Roy & Vetterli, 2007) of the centred X: exp of the Shannon entropy of its normalised
singular values p_k = s_k / sum s (from the eigenvalues of X_c^T X_c).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """The sums over examples that HSIC_1 of X with Y needs."""

    n: int
    cross: np.ndarray  # X^T Y (p x q)
    sx: np.ndarray  # sum_i x_i
    sy: np.ndarray
    kx: float  # sum_i |x_i|^2  (trace of K)
    ky: float
    kk: float  # sum_i |x_i|^2 |y_i|^2
    x_ly: np.ndarray  # sum_i x_i |y_i|^2
    y_kx: np.ndarray  # sum_i y_i |x_i|^2

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> "Moments":
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"CKA needs the same examples on both sides, got {x.shape[0]} and {y.shape[0]}")
        nx, ny = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
        return cls(
            n=x.shape[0],
            cross=x.T @ y,
            sx=x.sum(0),
            sy=y.sum(0),
            kx=float(nx.sum()),
            ky=float(ny.sum()),
            kk=float(nx @ ny),
            x_ly=x.T @ ny,
            y_kx=y.T @ nx,
        )

    def hsic(self) -> float:
        n = self.n
        if n < 4:
            raise ValueError(f"the unbiased HSIC needs at least 4 examples, got {n}")
        trace = float((self.cross**2).sum()) - self.kk
        k_sum, l_sum = float(self.sx @ self.sx) - self.kx, float(self.sy @ self.sy) - self.ky
        kl_sum = (
            float(self.sx @ self.cross @ self.sy) - float(self.sx @ self.x_ly) - float(self.sy @ self.y_kx) + self.kk
        )
        return (trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl_sum) / (n * (n - 3))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA of two representations of the same examples (rows)."""
    xy, xx, yy = Moments.of(x, y).hsic(), Moments.of(x, x).hsic(), Moments.of(y, y).hsic()
    denominator = np.sqrt(xx * yy) if xx > 0 and yy > 0 else 0.0
    return float(xy / denominator) if denominator > 0 else float("nan")


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of normalised singular values) of the centred representation (rows = examples)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    eigenvalues = np.clip(np.linalg.eigvalsh(centred.T @ centred), 0.0, None)
    singular = np.sqrt(eigenvalues)
    total = singular.sum()
    if total <= 0:
        return float("nan")
    p = singular[singular > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))
