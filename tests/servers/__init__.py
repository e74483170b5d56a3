"""Helpers that start, watch and stop real server processes for the end-to-end tests.

``procs`` knows about processes (free ports, bounded waits, process trees read from
/proc, stopping a process group); ``client`` is a tiny HTTP client that never raises on a
status code; ``web`` starts the web server (granian) exactly as production does (``WebServer``).

Loopback HTTP servers for outgoing connections, each in a process of its own:
``oauth`` (an OAuth 2.0 token server on authlib), ``rest_backend`` (a REST backend that
checks bearer tokens by introspection, or Basic, or an API key) and ``fhir`` (an HL7 FHIR
R4 server), on the plumbing in ``loopback`` (listeners, test switches, request log) with
``guard`` (their security) and ``tls`` (a test CA). ``serve_http`` is their process entry
point, ``http_handles`` starts and drives them from a test, ``http_fixtures`` has the
pytest fixtures.
"""
