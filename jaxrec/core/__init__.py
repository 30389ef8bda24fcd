"""The research core: what the program computes, apart from the harness around it. The train state
(state), the pure train and eval steps (steps), the optimizer (optim), preprocessing and augmentation on
the device (pipeline), test-time augmentation (tta), the scores (metrics), the steps compiled over the
devices with jax.pmap (parallel), and where a run stands (run_state). With the networks of jaxrec.models
it is the whole computation; it imports only the config and the models, nothing of the data readers,
run storage, runtime, studies or command line."""
