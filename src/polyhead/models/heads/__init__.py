"""Task heads: each reads the shared encoder's output and owns its targets, loss, decoding and metric."""
