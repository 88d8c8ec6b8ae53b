"""A route's rules: which source messages it copies (filters) and what their text becomes (transforms).

Pure data and functions: no Telegram client, no checkpoint. ``.env`` keys build them today (telepi/config.py);
a routes file can build the same frozen dataclasses.
"""

from telepi.rules.filters import Facts, Filters
from telepi.rules.transforms import Context, Replacement, Transforms

__all__ = ["Context", "Facts", "Filters", "Replacement", "Transforms"]
