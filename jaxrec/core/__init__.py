"""The research core: with jaxrec.models, what the program computes (state, steps, optim, pipeline, tta, metrics,
parallel, run_state), importing nothing of the harness (docs/design.md, "Imports point downward" and the Layout)."""
