"""The research core: with the networks of jaxrec.models, the whole computation, apart from the harness. The train
state (state), the pure train and eval steps (steps), the optimizer (optim), preprocessing and augmentation on the
device (pipeline), test-time augmentation (tta), the scores (metrics), the steps pmapped over the devices (parallel)
and where a run stands (run_state). It imports nothing of the data readers, run storage, runtime, studies or CLI."""
