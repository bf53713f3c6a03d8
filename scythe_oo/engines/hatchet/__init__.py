"""Everything Hatchet: the distributed engine, its workers, and included workflows.

Each registered experiment becomes one Hatchet task (its leaves), and one durable task,
``scythe_scatter_gather``, runs the engine-agnostic node logic of ``scythe_oo.tree`` for every
experiment. This package is the only place that imports hatchet_sdk, and it is loaded only when
a HatchetEngine, a worker or ``include`` is used.
"""
