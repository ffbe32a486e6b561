"""``hedgerow bench``: capacity planning — how many requests/s and open streams one gateway
worker carries on this machine, and how many workers a target load needs.

==============  ==========================================================================
``bench``       the run: processes, core layout, open streams, load steps, the figures
``loadgen``     the open-loop load generator (its own process)
``procs``       starting hedgerow's processes pinned to cores
``stats``       quantiles, a process's CPU and RSS, the machine
``report``      the table for people
``cli``         the command (``add_bench_command``, ``main_bench``)
==============  ==========================================================================
"""
