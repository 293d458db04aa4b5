"""A development-only LTI 1.3 platform (emulated Canvas and Moodle) for ``attune dev``.

Never shipped: the production image deletes ``devstack``. See ``docs/emulator.md``.
"""
