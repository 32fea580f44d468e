"""pysandbox on Ray: warm sandbox pools inside Ray actors, spread over a cluster's nodes.

>>> import ray
>>> from pysandbox import SandboxConfig
>>> from pysandbox.ray import SandboxPool
>>> pool = SandboxPool(SandboxConfig("stdin"), actors=2, slots_per_actor=4)  # doctest: +SKIP
>>> requests = ["print(1 + 1)", {"code": "print(input())", "stdin": "hi"}]
>>> [r.stdout for r in pool.map(requests)]  # doctest: +SKIP
['2\\n', 'hi\\n']

Install with ``pip install 'pysandbox[ray]'`` (``pip install '.[ray]'`` from a checkout); every
node needs the package (its ``pysandbox`` binary runs the sandbox there). See docs/ray.md.
"""

from ._actor import REQUEST_KEYS, SandboxActor, request_dict
from ._node import kernel_features, kernel_problems
from ._pool import PoolSession, SandboxPool

__all__ = [
    "PoolSession",
    "REQUEST_KEYS",
    "SandboxActor",
    "SandboxPool",
    "kernel_features",
    "kernel_problems",
    "request_dict",
]
