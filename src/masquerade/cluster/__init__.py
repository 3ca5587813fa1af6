"""masquerade on a Ray cluster: long videos in segments and batches of targets over many machines,
with the outputs one machine would give (``pip install 'masquerade[cluster]'``).

    from masquerade.cluster import ClusterOptions, swap
    summary = swap(["me.jpg"], ["a.mp4", "b.mp4"], ["a_out.mp4", "b_out.mp4"],
                   options=ClusterOptions(address="auto"))

Ray is imported only when a run starts, so this package loads without it.
"""

from masquerade.cluster.options import ClusterOptions, parse_cluster
from masquerade.cluster.runner import swap
from masquerade.cluster.summary import ClusterHooks, ClusterSummary, FileFailure
from masquerade.cluster.worker import WorkerInfo

__all__ = ["ClusterHooks", "ClusterOptions", "ClusterSummary", "FileFailure", "WorkerInfo", "parse_cluster",
           "swap"]
