"""relex: Korean relation extraction experiments, from one trainer to cluster-scale sweeps."""

__version__ = "0.1.0"
