"""Storage: where every byte of a run lives, and local copies of the files specs refer to.

The ArtifactStore protocol and its implementations (a local folder, an S3 bucket), the atomic
writes they share, the cache of fetched input files, and the one factory that builds a store
from settings, a manifest's description or a run folder's URI.
"""
