"""fsyncstudy: how much durability each fsync strategy costs, on your storage, and how sure we are.

The import is light on purpose (standard library only): the protocol node starts
from here.  pandas, scipy and seaborn come in with ``fsyncstudy.sweep``,
``fsyncstudy.stats`` and ``fsyncstudy.plots``.
"""
from .log import LogScan, read_log
from .strategies import Strategy, StrategyError, parse
from .targets import Target, describe
from .trial import TrialResult, run_trial

__version__ = "0.1.0"

__all__ = ["LogScan", "Strategy", "StrategyError", "Target", "TrialResult", "describe", "parse", "read_log",
           "run_trial", "__version__"]
