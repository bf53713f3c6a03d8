"""Definition: what a researcher writes down before anything runs.

Specs, the schema the framework derives from them, the Experiment base class with its settings
and hooks, the registry, and the small value classes that configure a run. Nothing here stores,
schedules or executes anything; every other layer builds on this one.
"""
