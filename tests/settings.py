"""The test suite's settings: Switchboard's own, plus a plug-in app that only the tests install.

``tests.plugin_app`` registers a security type and a connection type of its own, so the tests
can show that a plug-in needs no change anywhere else (tests/test_plugins.py).
"""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.plugin_app"]  # noqa: F405
