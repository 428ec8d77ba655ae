"""One-shot pruning of a trained model from calibration data, without retraining.

`mobileprune.prune_oneshot(model, sparsity, calibration_data, method=...)`
prunes with magnitude, Wanda or SparseGPT, in unstructured, N:M or block
patterns, or removes whole channels with least-squares reconstruction
(`pattern="channels"`). `mobileprune.hold_masks` keeps the zeros through a
later fine-tune.

Pieces: `calibration` (data checks and batches), `views` (layers as
`X @ W`), `capture` (layer inputs during a forward pass), `methods` (the
maths, NumPy only), `prune` (the layer-by-layer driver), `structured`
(channels), `hold` (masks for fine-tuning), `progress` (display).

Example:

```python
import mobileprune as mp
mp.prune_oneshot(model, 0.5, x_calibration, method="sparsegpt", exclude=["logits"])
```
"""
