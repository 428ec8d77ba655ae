"""Weight clustering: `k` shared values per weight or per output channel, zeros kept.

`ClusterCallback` clusters during `model.fit` (with `PruneCallback` in the same
fit if you like); `cluster_weights` clusters a trained model in one call;
`strip_clustering` leaves plain Keras weights with at most `k` distinct values
each, which `export_tflite` and `inspect` report per weight tensor.

Example:

```python
import mobileprune as mp
model.fit(x, y, epochs=5, callbacks=[mp.ClusterCallback(k=16)])
mp.strip_clustering(model)
```
"""
