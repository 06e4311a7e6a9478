"""The parts of ``bench/apply.py``: the estates it builds on each target type, and the runs."""
