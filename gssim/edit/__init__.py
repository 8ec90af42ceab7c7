"""Scene editing: the Gaussian asset library, edit operations, labels."""
