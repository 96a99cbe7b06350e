"""Retrieval metrics (PROTOCOL.md §2), the kNN search behind them, and embedding a data set with a model."""
