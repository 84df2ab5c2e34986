"""Benchmarks behind `python jobs/benchmark.py SUBCOMMAND`; one module per subcommand."""
