"""The composition root: the ``attune`` command (``attune.cli``).

Layers, each importing only from those below it: ``shared`` (what every service needs) <-
``services.<name>`` (one service each, never another service) <- ``attune`` (starts services,
runs operations) and ``devstack`` (development tooling: embedded servers, gateway, emulator;
never in the production image). ``tests/unit/test_layers.py`` checks it.
"""
