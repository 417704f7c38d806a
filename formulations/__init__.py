"""Published split-learning formulations, one module per paper, built on the public builder API."""
