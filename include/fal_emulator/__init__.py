"""A local stand-in for fal.ai's queue API (``https://queue.fal.run``) that renders real MP4s.

Run it with ``python -m fal_emulator --port 8765``; from tests use ``fal_emulator.testing.EmulatorServer``.
See README.md in this package for what it reproduces, what it does not, and the fault kinds.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
