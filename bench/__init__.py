"""Rosey's benchmark suite: the real command path and plugin fleet, measured against raw NATS.

Run from the repository root with ``make bench`` (or ``.venv/bin/python -m bench``); see
``python -m bench --help``. Every ratio in the table is measured side by side in the same run,
with A/B runs interleaved so machine noise hits both alike. Results go to ``bench/results/``.

Tools beside the suite (not run by ``make bench``): ``bench.profile_roundtrip`` (CPU per command
per process, py-spy, cProfile) and ``bench.micro`` (the pieces of the command path); findings,
including the A/B of each fix that was applied, in ``bench/PROFILE.md``.
"""
