"""The data codec for values crossing the sandbox boundary (implemented in Rust)."""

__version__: str

def encode(obj: object, path: str = "value") -> str:
    """Encode data (None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset) as
    pysandbox's tagged JSON. Raises TypeError naming the path of anything else."""

def decode(text: str) -> object:
    """Decode tagged JSON that came out of the sandbox; ValueError on anything not data."""
