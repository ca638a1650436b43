"""flowrestore benchmarks: accuracy per NFE on the closed-form oracles, loop overhead, GPU checks.

Run ``python -m benchmarks --help``; results are written as markdown tables (and plots) to the
output folder (default ``benchmarks/out``); ``benchmarks/RESULTS.md`` holds a recorded run.
"""
