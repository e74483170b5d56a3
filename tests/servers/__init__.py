"""Helpers that start, watch and stop real server processes for the end-to-end tests.

``procs`` knows about processes (free ports, bounded waits, process trees read from
/proc, stopping a process group); ``client`` is a tiny HTTP client that never raises on a
status code; ``web`` starts the web server (granian) exactly as production does (``WebServer``).
"""
