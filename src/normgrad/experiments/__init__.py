"""User-facing jobs behind the command line: the demo, the graph walk-through, the benchmark, the checks they run."""
