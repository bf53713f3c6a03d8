"""Run folder: the versioned folder that holds everything about one run.

Its layout (every key), its versions, its manifest (every state change), the specs.pq format
and the Parquet helpers every table writer shares. The seed tool's names are kept, so its users
find their files where they expect them.
"""
