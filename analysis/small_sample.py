"""Small-sample cluster-robust inference: CR2 (Bell-McCaffrey) with Satterthwaite degrees of freedom.

With few clusters (videos), the usual cluster-robust covariance (CR1: the sandwich times
``G/(G-1)``) is biased downwards, most where a few clusters carry most of the weight, and a
normal or ``t(G-1)`` reference then over-rejects: the demo's four-video joint timing test
reported a Wald statistic of 6655 and p = 0. CR2 (Bell & McCaffrey 2002) rescales each
cluster's residuals by ``(I - H_gg)^(-1/2)``, which makes the covariance unbiased under a
homoskedastic working model, and refers each contrast to a t distribution whose degrees of
freedom come from a Satterthwaite approximation (Bell & McCaffrey 2002; Imbens & Kolesar 2016;
Pustejovsky & Tipton 2018). Joint tests of q contrasts use the Hotelling-T^2 F approximation
``F = W (G - q) / (q (G - 1))`` on ``(q, G - q)`` df, which is never a p of 0 from four clusters.

Weighted least squares is handled by the usual square-root-of-weights transform (inverse-
variance weights, so the working model on the transformed scale is the identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "ClusterFit",
    "METHOD_CR1",
    "METHOD_CR2",
    "SMALL_SAMPLE_CLUSTERS",
    "cluster_wls",
    "hotelling_test",
]

SMALL_SAMPLE_CLUSTERS = 30  # below this many clusters the report uses CR2 + Satterthwaite df
METHOD_CR2 = "CR2 (Bell-McCaffrey) + Satterthwaite df"
METHOD_CR1 = "CR1 (G/(G-1)) + t(G-1)"


def _inv_sqrt_psd(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """Symmetric ``a^(-1/2)`` of a PSD matrix; False when an eigenvalue is ~0 (a cluster with leverage 1)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    ok = bool(vals.min() > 1e-10)
    inv = np.where(vals > 1e-10, 1.0 / np.sqrt(np.clip(vals, 1e-300, None)), 0.0)
    return (vecs * inv) @ vecs.T, ok


@dataclass
class ClusterFit:
    """A WLS fit with CR1 and CR2 covariances and what the Satterthwaite df needs."""

    beta: np.ndarray
    vcov_cr2: np.ndarray
    vcov_cr1: np.ndarray
    n_clusters: int
    bread: np.ndarray  # (X'WX)^-1
    _xs_by_cluster: list[np.ndarray]
    _adjust: list[np.ndarray]
    full_leverage: bool  # some cluster has leverage 1 for some direction: CR2 falls back to a pseudo-inverse

    def satterthwaite_df(self, c: np.ndarray) -> float:
        """Bell-McCaffrey degrees of freedom for the contrast ``c . beta`` (working model: identity)."""
        c = np.asarray(c, dtype=float)
        mc = self.bread @ c
        vs = [a @ (xg @ mc) for a, xg in zip(self._adjust, self._xs_by_cluster, strict=False)]
        b = np.column_stack([xg.T @ v for xg, v in zip(self._xs_by_cluster, vs, strict=False)])  # p x G
        gtg = np.diag([float(v @ v) for v in vs]) - b.T @ self.bread @ b
        lam = np.linalg.eigvalsh((gtg + gtg.T) / 2)
        lam = lam[lam > 1e-12 * max(lam.max(), 1e-300)]
        if lam.size == 0:
            return float("nan")
        return float(lam.sum() ** 2 / (lam**2).sum())

    def contrast(self, c: np.ndarray, alpha: float = 0.05, method: str = "CR2") -> dict[str, float]:
        """Estimate, SE, t, df, p and CI of ``c . beta`` by CR2 + Satterthwaite df or CR1 + t(G-1)."""
        c = np.asarray(c, dtype=float)
        est = float(c @ self.beta)
        if method == "CR2":
            se = float(np.sqrt(max(c @ self.vcov_cr2 @ c, 0.0)))
            df = self.satterthwaite_df(c)
        else:
            se = float(np.sqrt(max(c @ self.vcov_cr1 @ c, 0.0)))
            df = float(self.n_clusters - 1)
        if not (se > 0 and np.isfinite(df) and df > 0):
            return {
                "estimate": est,
                "se": se,
                "t": float("nan"),
                "df": df,
                "p_value": float("nan"),
                "ci_low": float("nan"),
                "ci_high": float("nan"),
            }
        crit = stats.t.ppf(1 - alpha / 2, df)
        t = est / se
        return {
            "estimate": est,
            "se": se,
            "t": t,
            "df": df,
            "p_value": float(2 * stats.t.sf(abs(t), df)),
            "ci_low": est - crit * se,
            "ci_high": est + crit * se,
        }

    def joint_test(self, contrasts: np.ndarray, values: np.ndarray | None = None) -> dict[str, float]:
        """Wald test of ``C beta = values`` on the CR2 covariance, as a Hotelling-T^2 F on (q, G - q) df."""
        cm = np.atleast_2d(np.asarray(contrasts, dtype=float))
        est = cm @ self.beta - (0.0 if values is None else np.asarray(values, dtype=float))
        return hotelling_test(est, cm @ self.vcov_cr2 @ cm.T, self.n_clusters)


def hotelling_test(estimate: np.ndarray, cov: np.ndarray, n_clusters: int) -> dict[str, float]:
    """Joint Wald test of q estimates from G clusters: ``F = W (G - q) / (q (G - 1))`` on (q, G - q) df.

    Returns nan statistics (never p = 0 from an inverted rank-deficient matrix) when the
    clusters cannot support q restrictions or the covariance is singular or not finite.
    """
    est = np.atleast_1d(np.asarray(estimate, dtype=float))
    cov = np.atleast_2d(np.asarray(cov, dtype=float))
    q, g = len(est), n_clusters
    out = {"wald": float("nan"), "f": float("nan"), "df1": float(q), "df2": float(g - q), "p_value": float("nan")}
    if g - q < 1 or not (np.isfinite(est).all() and np.isfinite(cov).all()):
        return out
    if np.linalg.matrix_rank(cov) < q:
        return out
    wald = float(est @ np.linalg.solve(cov, est))
    f = wald * (g - q) / (q * (g - 1))
    out.update(wald=wald, f=f, p_value=float(stats.f.sf(f, q, g - q)))
    return out


def cluster_wls(x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None) -> ClusterFit:
    """WLS of ``y`` on ``x`` (weights = inverse variances) with CR1 and CR2 covariances by ``groups``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = x.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    sw = np.sqrt(w)
    xs, ys = x * sw[:, None], y * sw
    bread = np.linalg.pinv(xs.T @ xs)
    beta = bread @ (xs.T @ ys)
    es = ys - xs @ beta
    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    clusters = np.split(order, bounds)
    g = len(clusters)
    meat1 = np.zeros((p, p))
    meat2 = np.zeros((p, p))
    xs_by, adjust = [], []
    full = False
    for idx in clusters:
        xg, eg = xs[idx], es[idx]
        s1 = xg.T @ eg
        meat1 += np.outer(s1, s1)
        a, ok = _inv_sqrt_psd(np.eye(len(idx)) - xg @ bread @ xg.T)
        full |= not ok
        s2 = xg.T @ (a @ eg)
        meat2 += np.outer(s2, s2)
        xs_by.append(xg)
        adjust.append(a)
    small = (g / (g - 1)) * ((n - 1) / (n - p)) if g > 1 and n > p else float("nan")
    return ClusterFit(
        beta=beta,
        vcov_cr2=bread @ meat2 @ bread,
        vcov_cr1=small * bread @ meat1 @ bread,
        n_clusters=g,
        bread=bread,
        _xs_by_cluster=xs_by,
        _adjust=adjust,
        full_leverage=full,
    )
