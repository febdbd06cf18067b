"""fsyncstudy: how much durability each fsync strategy costs, on your storage, and how sure we are.

The package is built in layers; a module imports only from its own layer or the layers
above it in this list (``tests/test_layering.py`` reads every import, those inside
functions too, and fails on a cycle or an import that goes the other way):

1. ``strategies`` ``measures`` ``intervals``: the strategy table; percentiles and exposures; t intervals
2. ``log`` ``writepaths``: record framing, the log file, the reader; the write paths real WALs use (RWF_DSYNC,
   O_DIRECT tail blocks, sync_file_range, segment files)
3. ``engine``: the writer loops, and ``engine.run``, the one dispatch from a strategy to its loop
4. ``targets``: what a directory is stored on, and whether a sync there is durable
5. ``lab``: loop filesystems, the power-cut FUSE filesystem, fault injection (optional, root)
6. ``places``: a path or ``lab:`` name to a directory; the default targets
7. ``trial`` ``load`` ``cuts``: one measured run, ``run_trial`` -> ``TrialResult`` (closed loop; the node's rounds);
   ``run_load_trial`` -> ``LoadResult`` (open loop: entries arrive at a rate); ``cuts``: the one power-cut
   harness (a child that reports its acknowledgements, cut at a seeded moment) for our writers and the databases
8. ``fsyncstudy`` itself (this file: the names most users need)
9. ``dataset`` ``runner``: environment metadata, durable tables, the lock, ``open_or_resume``, typed loading;
   the one loop that fills a dataset (``runner.fill``) and its one ``Summary``
10. ``sweep`` ``crash`` ``loadstudy`` ``peertools`` ``peers`` ``pgtest`` ``etcd`` ``realdb`` ``realstudy`` ``fleet``
    ``diskcheck``: measurements that fill datasets (``realdb``: SQLite, PostgreSQL and Redis started and stopped
    by us; ``fleet``: one sweep across many hosts, on Dask distributed, imported only there; ``diskcheck``: the
    flush-honesty check, an observer recording a writer's acknowledgements across a pulled plug)
11. ``stats``: intervals and effect sizes over trials (pandas, scipy)
12. ``analysis`` ``analysis.choice`` ``analysis.sweep`` ``analysis.crash`` ``analysis.peers`` ``analysis.tworuns``
    ``analysis.load`` ``analysis.realdb`` ``analysis.fleet`` ``analysis.text``: the tables the notebooks show
    (frames in, tables out), one module per topic; ``text``: the sentences built from them, and ``Checks``
13. ``plots`` ``explore``: every figure; the notebooks' widgets (ipywidgets) over them
14. ``profiles``: what each profile measures (a plan for every part of the study); how long that takes
15. ``catalog``: where datasets go (their default names), which there are, the newest, what the notebooks
    open; the upgrade of datasets written before format 2
16. ``study``: the ``make report`` pipeline
17. ``report``: notebooks executed and rendered to HTML
18. ``cli`` ``node`` ``__main__``: the shells (``cli``: a module per command family, whose formatters
    return text; the protocol node)

Layers 1-8 are the standard library only: the protocol node starts from them.  pandas,
scipy and seaborn come in with ``stats``, ``analysis`` and ``plots``.
"""
#: The layers whose modules measure (1-7 and 10): what their code does is what a dataset's numbers
#: mean, so ``dataset.engine_digest`` covers every module in them, read from the list above.
MEASURING_LAYERS = (1, 2, 3, 4, 5, 6, 7, 10)


def layers() -> dict[str, int]:
    """Each module's layer, read from the numbered list in this docstring: {"fsyncstudy.engine": 3, ...}
    (a package, like ``fsyncstudy.lab``, stands for its modules unless they are listed)."""
    import re
    out = {}
    # an item runs on over its indented lines; its modules are the names before its first colon
    for m in re.finditer(r"^(\d+)\. (.*(?:\n[ \t]+\S.*)*)", __doc__ or "", re.M):
        for n in re.findall(r"``([\w.]+)``", m.group(2).split(":")[0]):
            out["fsyncstudy" if n == "fsyncstudy" else f"fsyncstudy.{n}"] = int(m.group(1))
    return out


__version__ = "0.1.0"

#: The names most users need, each imported from its module on first use (PEP 562), so that importing
#: the package (as ``python -m fsyncstudy.node`` does first) costs nothing measurable.
_EXPORTS = {"LogScan": "log", "read_log": "log", "Strategy": "strategies", "StrategyError": "strategies",
            "parse": "strategies", "Target": "targets", "describe": "targets", "TrialResult": "trial",
            "run_trial": "trial"}

__all__ = ["LogScan", "Strategy", "StrategyError", "Target", "TrialResult", "describe", "parse", "read_log",
           "run_trial", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fsyncstudy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
