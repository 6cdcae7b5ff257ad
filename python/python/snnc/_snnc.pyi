"""Type stubs of the compiled extension `snnc._snnc`."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class SnncError(Exception): ...
class ConversionError(SnncError): ...
class VerifyError(ConversionError): ...
class SimulationError(SnncError): ...
class InputError(SimulationError): ...

class Network:
    @property
    def inputs(self) -> Dict[str, Tuple[int, ...]]: ...
    @property
    def outputs(self) -> Dict[str, Tuple[int, ...]]: ...
    @property
    def populations(self) -> List[str]: ...
    @property
    def ir(self) -> str: ...
    @property
    def dt(self) -> float: ...
    @property
    def warnings(self) -> List[str]: ...
    @property
    def calibration(self) -> Optional[str]: ...
    def to_bytes(self) -> bytes: ...
    def save(self, path: Union[str, PathLike]) -> None: ...
    def to_nir(self, path: Union[str, PathLike], fold_gains: bool = False) -> List[str]: ...
    @staticmethod
    def from_bytes(data: bytes) -> Network: ...

class Simulator:
    def __init__(
        self, network: Network, batch: int, backend: str = "jit", threads: int = 1
    ) -> None: ...
    @property
    def batch(self) -> int: ...
    @property
    def network(self) -> Network: ...
    def run(
        self,
        inputs: Sequence[npt.NDArray[np.float32]],
        labels: Optional[Sequence[int]] = None,
        steps: Optional[int] = None,
        seed: int = 0,
        all_steps: bool = True,
        accuracy_at: Sequence[int] = (),
        progress: Optional[Callable[[int, int], Any]] = None,
        probes: Sequence[str] = (),
        readout: str = "last",
    ) -> Dict[str, Any]: ...

def compile(
    path: Union[str, PathLike],
    *,
    spiking: bool = False,
    swap: Optional[str] = None,
    scale: Optional[float] = None,
    layer_scales: Sequence[Tuple[str, float]] = (),
    synapse: Optional[float] = None,
    no_synapse: bool = False,
    layer_synapses: Sequence[Tuple[str, Optional[float]]] = (),
    initial_voltage: Union[None, str, float] = None,
    max_pool: Optional[str] = None,
    dt: Optional[float] = None,
    passes: Optional[Sequence[str]] = None,
    calibration: Optional[npt.NDArray[np.float32]] = None,
    normalize_rule: str = "budget",
    percentile: float = 99.0,
    max_rate: float = 1000.0,
    error_fraction: float = 0.3,
    target_steps: Optional[int] = None,
    target_agreement: float = 0.99,
) -> Network: ...
def supported_layers() -> List[str]: ...

DEFAULT_PASSES: List[str]
