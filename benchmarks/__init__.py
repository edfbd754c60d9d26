"""Benchmarks of tslrec: scripts run from the repository root as `python -m benchmarks.NAME [--help]`.

Each writes its JSON to benchmarks/results/ with where it ran (benchmarks/common.py); grids go through
the runner and its cache (`run all`'s own experiment code, pipeline/experiment.py); RESULTS.md is
generated from the results files by `python -m benchmarks.results_doc` (stdlib only). docs/benchmarks.md
says what each script measures.
"""
