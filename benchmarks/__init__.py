"""Benchmark suite: kstlib.websocket against its peers and against the floors, in one run.

Run ``python -m benchmarks`` from the repository root (see ``benchmarks/README.md``).
Modules: ``payloads`` (messages and pre-encoded frames), ``server`` (the loopback server
process), ``clients`` (one runner per client and scenario, run in a fresh subprocess by
``worker``), ``scenarios`` (what is measured and with which sizes), ``report``
(RESULTS.md, results.json, results.png) and ``__main__`` (the command line).
"""
