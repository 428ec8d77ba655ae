"""Training-time magnitude pruning: schedules, patterns, masks and the Keras callback."""
