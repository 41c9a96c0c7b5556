"""The preview service: generation with embeddings, preview grids and savepoint scoring."""
