"""A simulated inference fleet speaking TGI's HTTP API, answering from a correctness matrix.

Used by the tests and the demo in place of real GPU servers: `Fleet` runs the endpoints,
`config` describes them, `build` derives a fleet from a matrix, `synthetic_items` writes
benchmark-like query sets.
"""

from gemfinder.sim.fleet.config import EndpointSpec, FleetConfig, Latency, load_fleet_config
from gemfinder.sim.fleet.fleet import Fleet

__all__ = ["EndpointSpec", "Fleet", "FleetConfig", "Latency", "load_fleet_config"]
