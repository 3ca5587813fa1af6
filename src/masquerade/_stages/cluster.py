"""Agglomerative clustering of identity embeddings, with no fixed number of clusters.

Average linkage (UPGMA): two groups merge while the mean distance between their members is at most
the recognizer's same-person threshold. Average linkage neither chains a whole room together through
look-alike neighbours (single linkage's failure) nor splits a person whose pictures vary (complete
linkage's). Two items that must not meet (two faces seen in the same frame are two people) block any
merge that would put them in one group.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def agglomerate(distances: NDArray[np.floating], threshold: float,
                cannot_link: NDArray[np.bool_] | None = None) -> list[int]:
    """Group labels for ``n`` items from their (n, n) symmetric ``distances``.

    Labels are 0, 1, ... in the order of each group's first item, and the result depends only on the
    input (ties go to the lowest indices), so the same footage always gives the same groups.
    """
    d = np.array(distances, dtype=np.float64)
    n = d.shape[0]
    if d.shape != (n, n):
        raise ValueError(f"distances must be square, got {d.shape}")
    if n == 0:
        return []
    blocked = np.zeros((n, n), bool) if cannot_link is None else np.array(cannot_link, dtype=bool)
    if blocked.shape != (n, n):
        raise ValueError(f"cannot_link must be {(n, n)}, got {blocked.shape}")
    blocked = blocked | blocked.T
    sizes = np.ones(n)
    alive = np.ones(n, bool)
    members = [[i] for i in range(n)]
    usable = d.copy()
    np.fill_diagonal(usable, np.inf)
    usable[blocked] = np.inf
    while True:
        flat = int(np.argmin(usable))
        a, b = divmod(flat, n)
        if not np.isfinite(usable[a, b]) or usable[a, b] > threshold:
            break
        a, b = min(a, b), max(a, b)
        # UPGMA: the merged group's mean distance to every other group, weighted by group sizes.
        d[a] = d[:, a] = (sizes[a] * d[a] + sizes[b] * d[b]) / (sizes[a] + sizes[b])
        blocked[a] = blocked[:, a] = blocked[a] | blocked[b]
        sizes[a] += sizes[b]
        members[a] += members[b]
        alive[b] = False
        usable[a] = usable[:, a] = np.where(blocked[a] | ~alive, np.inf, d[a])
        usable[a, a] = np.inf
        usable[b] = usable[:, b] = np.inf
    labels = [0] * n
    groups = sorted((min(members[i]), members[i]) for i in range(n) if alive[i])
    for label, (_, group) in enumerate(groups):
        for i in group:
            labels[i] = label
    return labels


__all__ = ["agglomerate"]
