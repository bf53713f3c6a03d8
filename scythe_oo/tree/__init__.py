"""Tree: the scatter/gather tree, written once for every engine.

A node splits its specs among children or runs its leaves; it gathers what came back into
Arrow tables and checkpoints them. The journal keeps finished leaves across crashes, the
collector turns outcomes into tables, and the root writes final/. Nothing here knows how an
engine runs a node: engines supply a Dispatcher.
"""
