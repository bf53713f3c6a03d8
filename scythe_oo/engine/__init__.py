"""Engine: the protocol every engine implements, and the table that finds engines by name.

Like an httpx transport, an engine is small: it accepts a prepared run and hands back a handle
that reports progress. The tree logic lives in ``scythe_oo.tree``; an engine only decides how
nodes and leaves are executed (a local process pool, Hatchet tasks, ...).
"""
