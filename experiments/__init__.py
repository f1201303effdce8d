"""esgkit experiments: ablation grids (``esgkit grid``: ``experiments/grid/``) and the executors
they run on (``local``, ``ray``: ``experiments/executors.py``). It sits above pipelines, training and
evaluation and may use all of them; nothing imports it."""

__all__ = ["register_builtins"]


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components: the grid executors. ``ray`` is registered only where
    Ray is installed (an optional extra), so that every registered executor can run; asking for it
    elsewhere says how to install it (``esgkit grid --executor ray``)."""
    from .executors import ray_available

    register("executor", "local", "esgkit.experiments.executors:LocalExecutor",
             "a process pool on this machine, CPU threads per cell set so the cores are not oversubscribed")
    if ray_available():
        register("executor", "ray", "esgkit.experiments.executors:RayExecutor",
                 "Ray tasks on a local Ray or an existing cluster (--address auto)")
