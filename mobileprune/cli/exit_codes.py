"""Exit codes shared by every ``mobileprune`` subcommand.

A module of its own so that ``cli.main`` (which loads the subcommands) and the
subcommands (which return the codes) both import it and not each other.

Example:

```python
from mobileprune.cli.exit_codes import EXIT_BAD_INPUT
raise SystemExit(EXIT_BAD_INPUT)
```
"""

from __future__ import annotations

# Success.
EXIT_OK = 0
# The check the user asked for failed (e.g. latency over budget).
EXIT_CHECK_FAILED = 1
# Bad input: usage, missing or malformed file.
EXIT_BAD_INPUT = 2
# Internal or runtime error.
EXIT_RUNTIME_ERROR = 3
