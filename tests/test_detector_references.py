"""The clustering detectors against scikit-learn's own DBSCAN and k-means, an
independent implementation of the same definitions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import DBSCAN, KMeans

from sfp.models.detectors import build_detector


def clustered_tokens(seed: int, clusters=(60, 50, 40, 3), isolated: int = 6, dim: int = 16,
                     spread: float = 0.15):
    """(1, 1 + N, dim) tokens: a CLS token, tight clusters of the given sizes, and
    isolated tokens far from everything; rows are shuffled."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=dim) * 4 + rng.normal(scale=spread, size=(size, dim))
             for size in clusters]
    parts.append(rng.normal(size=(isolated, dim)) * 4)
    x = np.concatenate(parts)[rng.permutation(sum(clusters) + isolated)]
    return torch.from_numpy(np.concatenate([rng.normal(size=(1, dim)), x]))[None]


def cosine_distances(tokens: torch.Tensor) -> np.ndarray:
    x = F.normalize(tokens[0, 1:].float(), dim=-1)
    return (1 - x @ x.t()).clamp_min(0).fill_diagonal_(0).numpy()


@pytest.mark.parametrize('seed,spread', [(0, 0.15), (1, 0.15), (2, 1.5), (3, 2.5)])
@pytest.mark.parametrize('eps,min_samples', [(0.05, 5), (0.2, 4), (0.5, 8)])
def test_dbscan_noise_is_sklearns(seed, spread, eps, min_samples):
    tokens = clustered_tokens(seed, spread=spread)
    n = tokens.shape[1] - 1
    detector = build_detector(dict(type='DBSCAN', eps=eps, min_samples=min_samples,
                                   min_cluster_fraction=0, max_outliers=None), 0.3)
    ours = set(np.flatnonzero(detector(tokens, None, (1, n)).mask()[0].numpy()))
    reference = DBSCAN(eps=eps, min_samples=min_samples, metric='precomputed').fit(
        cosine_distances(tokens).astype(np.float64))
    assert ours == set(np.flatnonzero(reference.labels_ == -1))


@pytest.mark.parametrize('seed', range(4))
def test_kmeans_small_clusters_are_sklearns(seed):
    tokens = clustered_tokens(seed, clusters=(70, 55, 45, 4, 3), isolated=0)
    n = tokens.shape[1] - 1
    k, min_fraction = 5, 0.03
    detector = build_detector(dict(type='KMeans', num_clusters=k, iterations=50,
                                   min_cluster_fraction=min_fraction, max_outliers=None), 0.3)
    ours = set(np.flatnonzero(detector(tokens, None, (1, n)).mask()[0].numpy()))
    x = F.normalize(tokens[:, 1:].float(), dim=-1)
    seeds = detector._seed(x, k)[0].numpy()
    reference = KMeans(n_clusters=k, init=seeds, n_init=1, max_iter=50, tol=0,
                       algorithm='lloyd').fit(x[0].numpy())
    sizes = np.bincount(reference.labels_, minlength=k)
    min_size = max(2, round(min_fraction * n))
    expected = set(np.flatnonzero(sizes[reference.labels_] < min_size))
    assert expected and ours == expected
