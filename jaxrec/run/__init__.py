"""What a run keeps on disk: checkpoints of the whole train state (checkpoints), the workdir and its lock
(workdir), the output files (outputs) and the metric writers, metrics.jsonl and TensorBoard (writers)."""
