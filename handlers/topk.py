"""Scores to the answer MMS users know: ``[{"probability": p, "class": label}, ...]``."""
import numpy as np


def softmax(scores):
    """Numerically stable softmax over the last axis.

    >>> softmax(np.array([0.0, 0.0])).tolist()
    [0.5, 0.5]
    """
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities, labels, k=5):
    """The ``k`` most probable classes, most probable first.

    Ties keep the lower class index first, so answers are reproducible.

    >>> top_k(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], k=2)
    [{'probability': 0.7, 'class': 'b'}, {'probability': 0.2, 'class': 'c'}]
    """
    probabilities = np.asarray(probabilities).reshape(-1)
    k = max(1, min(int(k), probabilities.size))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"probability": float(probabilities[i]), "class": labels[i]} for i in order]
