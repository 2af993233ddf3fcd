"""Clustering: spherical k-means (faiss / torch / sklearn) and cluster-quality metrics."""
from .kmeans import KMeansResult, spherical_kmeans
from .metrics import cluster_report, cluster_sizes, contingency, hungarian_accuracy, inverse_purity, nmi, purity

__all__ = ["KMeansResult", "spherical_kmeans", "cluster_report", "cluster_sizes", "contingency",
           "hungarian_accuracy", "inverse_purity", "nmi", "purity"]
