"""The bundled Huntress API simulator: a real HTTP server over a seeded, time-moving world."""

from .server import DEMO_API_KEY, DEMO_API_SECRET, FORBIDDEN_API_KEY, Faults, SimulatorConfig, SimulatorServer
from .world import World, WorldConfig

__all__ = [
    "DEMO_API_KEY", "DEMO_API_SECRET", "FORBIDDEN_API_KEY", "Faults", "SimulatorConfig", "SimulatorServer",
    "World", "WorldConfig",
]
