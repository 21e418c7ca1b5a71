"""Disentanglement of codes against known generating factors: MIG (Chen et al. 2018) and DCI (Eastwood &
Williams 2018).

MIG: for each factor k, the gap between the two largest mutual informations I(z_j; v_k) over code
dimensions j, divided by the factor's entropy H(v_k); averaged over factors. Codes are binned (20 bins).

DCI: R[j, k] = importance of code j for predicting factor k (a random forest per factor).
  disentanglement = sum_j rho_j (1 - H_K(R[j, :] / sum_k R[j, k])),  rho_j = sum_k R[j, k] / sum R
  completeness    = sum_k rho_k (1 - H_D(R[:, k] / sum_j R[j, k])),  rho_k = sum_j R[j, k] / sum R
  informativeness = mean over factors of the forest's test accuracy
with entropies in base K (factors) and D (codes).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import mutual_info_score


def _discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    out = np.empty(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        out[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return out


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """codes: (N, D) floats, factors: (N, K) ints -> MIG in [0, 1]."""
    binned = _discretize(np.asarray(codes, float), bins)
    factors = np.asarray(factors)
    gaps = []
    for k in range(factors.shape[1]):
        entropy = mutual_info_score(factors[:, k], factors[:, k])
        if entropy <= 0:
            continue
        mi = sorted((mutual_info_score(binned[:, j], factors[:, k]) for j in range(binned.shape[1])), reverse=True)
        gaps.append((mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / entropy)
    return float(np.mean(gaps)) if gaps else 0.0


def _entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of p (rows sum to 1) in the given base; 0 log 0 = 0."""
    if base <= 1:
        return np.zeros(len(p))
    p = np.clip(p, 1e-12, 1.0)
    return -(p * np.log(p)).sum(1) / np.log(base)


def dci(codes_train, factors_train, codes_test, factors_test, seed: int = 0, trees: int = 50) -> dict:
    """DCI disentanglement, completeness and informativeness, each in [0, 1]."""
    codes_train, codes_test = np.asarray(codes_train, float), np.asarray(codes_test, float)
    factors_train, factors_test = np.asarray(factors_train), np.asarray(factors_test)
    n_codes, n_factors = codes_train.shape[1], factors_train.shape[1]
    importance = np.zeros((n_codes, n_factors))
    accuracy = []
    for k in range(n_factors):
        # every split sees every code, so a code that alone predicts the factor takes all the importance
        forest = RandomForestClassifier(trees, max_depth=8, max_features=None, random_state=seed, n_jobs=1)
        forest.fit(codes_train, factors_train[:, k])
        importance[:, k] = forest.feature_importances_
        accuracy.append(forest.score(codes_test, factors_test[:, k]))
    total = importance.sum()
    code_weight = importance.sum(1) / total
    factor_weight = importance.sum(0) / total
    per_code = importance / np.maximum(importance.sum(1, keepdims=True), 1e-12)
    per_factor = (importance / np.maximum(importance.sum(0, keepdims=True), 1e-12)).T
    return {
        "dci_disentanglement": float((code_weight * (1 - _entropy(per_code, n_factors))).sum()),
        "dci_completeness": float((factor_weight * (1 - _entropy(per_factor, n_codes))).sum()),
        "dci_informativeness": float(np.mean(accuracy)),
    }


def disentanglement(model, data, max_examples: int = 5000, seed: int = 0) -> dict:
    """MIG and DCI of a trained model's codes on a dataset with known factors (e.g. `shapes`)."""
    from genlab.errors import GenlabError
    from genlab.latent import encode

    if data.train.factors is None:
        raise GenlabError(
            f"disentanglement metrics need data with known generating factors (such as 'shapes'); "
            f"'{data.meta.name}' has none."
        )
    train, test = data.train.subset(slice(0, max_examples)), data.test.subset(slice(0, max_examples))
    codes_train, codes_test = encode(model, train.x).numpy(), encode(model, test.x).numpy()
    return {"mig": mig(codes_train, train.factors.numpy()),
            **dci(codes_train, train.factors.numpy(), codes_test, test.factors.numpy(), seed=seed)}
