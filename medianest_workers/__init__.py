"""medianest-workers: the background-job platform of MediaNest."""

__version__ = "0.1.0"
