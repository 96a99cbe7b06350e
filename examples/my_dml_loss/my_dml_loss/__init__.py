"""An example of a loss benchmarked with dml-benchmark without forking it (see README.md next to this package)."""

from my_dml_loss.my_loss import LOSSES, HardPairSoftMarginLoss

__all__ = ["LOSSES", "HardPairSoftMarginLoss"]
