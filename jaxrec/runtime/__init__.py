"""The process a run lives in: set-up at the boundary (setup), CPU devices (cpu_devices), joined
processes (distributed), signals (interrupt), memory checks (memory) and the machine (host)."""
