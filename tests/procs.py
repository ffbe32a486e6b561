"""Starting hedgerow's own processes (the simulator, the gateway) on loopback for tests and
benchmarks: the product's own helpers (``hedgerow bench`` starts its processes the same way),
so fixtures that start real processes have one home."""

from hedgerow.capacity.procs import HEDGEROW, free_port, hedgerow_process, wait_for_port

__all__ = ["HEDGEROW", "free_port", "hedgerow_process", "wait_for_port"]
