"""Driver: what runs in the researcher's own process to launch and follow runs.

Allocate (validate, upload input files, write the run folder, submit), the one place that
resolves strategies, and ExperimentRun, the handle on a run folder. Engines are reached through
the engine protocol and its name table, never imported directly.
"""
