"""Processes: the process tree (procs.tree), the /proc reader (procs.procfs), container ids (procs.containers)
and the kernel's process connector (procs.connector)."""
