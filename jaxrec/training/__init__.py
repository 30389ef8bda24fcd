"""Training: the loop that runs the core's compiled steps for one model or several (loop), the input
decision and memory checks (inputs), and the feeds that hand each device call its batches (feed)."""
