"""Example: sweep an analytic building-energy model over thousands of designs with scythe_oo.

Start with ``__main__.py`` (how a run is launched), then ``experiment.py`` (how a
simulation is wrapped as an Experiment). ``model.py`` is the physics and knows
nothing about scythe_oo. ``design.py`` goes from the schema to a report: it samples
the designs with a Latin hypercube, estimates the sweep from a pilot, runs it and writes
the run's HTML report.
"""
