"""The protocol-neutral request and response the servicer and the NATS adapter share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]


@dataclass(slots=True)
class InferRequest:
    model: str
    version: str  # "" = the newest ready version
    inputs: dict[str, Array]
    id: str = ""
    outputs: tuple[str, ...] = ()  # () = every output
    priority: int = 0  # 0 = the model's default level
    timeout_us: int = 0  # 0 = the queue policy's default


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: dict[str, Array]
    id: str = ""
    datatypes: dict[str, str] = field(default_factory=dict)  # output name -> OIP datatype
    # Seconds in the batcher's queue and in the model call: callers judge service on the
    # second (the first grows with the load, not with a fault).
    queue_s: float = 0.0
    compute_s: float = 0.0
