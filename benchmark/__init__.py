"""Fair benchmarking of deep-metric-learning losses (the "Metric Learning Reality Check" protocol)."""

__version__ = "0.1.0"
