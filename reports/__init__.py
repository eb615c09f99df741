"""Comparative stability reports of an er-tune experiment (DESIGN.md §7).

``commands.report_command`` reads an experiment dir (discover.py, results_io.py), builds the
Arrow tables (tables.py, stats.py), writes them atomically as Parquet (parquet_io.py) and renders
them (render.py, plots.py); ``commands.show_command`` prints a report dir again.
"""
