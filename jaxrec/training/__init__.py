"""Training: the train state (state), the pure steps (steps), the optimizer (optim), the steps compiled
over devices (parallel), the loop that runs them for one model or several (loop), and where a run
stands (run_state)."""
