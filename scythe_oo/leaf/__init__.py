"""Leaf: running one spec on a worker, whatever engine sent it.

Executing a leaf (fetch its files, call ``run``, check and publish the output), the process
that hosts experiment instances between leaves, the deadline that bounds a leaf, and the
outcome it reports back: a row of scalars, or a row of failures.
"""
