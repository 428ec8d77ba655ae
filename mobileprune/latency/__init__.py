"""Prune to a latency budget: measured LiteRT latency tables and per-group widths chosen to fit.

``build_latency_table`` measures the op configurations a model can take after
``shrink`` (``table.py``, cut into sites by ``sites.py``);
``prune_to_latency`` chooses every channel group's width to keep the most
importance within a budget (``allocate.py``).

Example:

```python
import mobileprune as mp
table = mp.build_latency_table(model, dtype="int8", threads=1)
small, report = mp.prune_to_latency(model, budget_ms=2.0, table=table)
```
"""
