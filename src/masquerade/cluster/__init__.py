"""masquerade on a Ray cluster: long videos in segments and batches of targets over many machines,
with the outputs one machine would give (``pip install 'masquerade[cluster]'``).

    from masquerade.cluster import ClusterOptions, swap, swap_many
    swap(["me.jpg"], "long.mp4", "long_out.mp4", options=ClusterOptions(address="auto"))
    summary = swap_many(["me.jpg"], ["a.mp4", "clips/"], "out/", options=ClusterOptions(address="auto"))

Ray is imported only when a run starts, so this package loads without it.
"""

from masquerade.cluster.options import ClusterOptions, cluster_problems, parse_cluster, validate_cluster
from masquerade.cluster.runner import enhance, enhance_many, run, swap, swap_many
from masquerade.cluster.summary import ClusterHooks, ClusterSummary
from masquerade.cluster.worker import WorkerInfo

__all__ = ["ClusterHooks", "ClusterOptions", "ClusterSummary", "WorkerInfo", "cluster_problems", "enhance",
           "enhance_many", "parse_cluster", "run", "swap", "swap_many", "validate_cluster"]
