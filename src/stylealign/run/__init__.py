"""The runtime under every stage: the run context, keyed work in batches, oracle retries, and the stage order."""
