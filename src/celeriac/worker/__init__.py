"""The worker: consumer loop, task execution and the pools that run task bodies."""
