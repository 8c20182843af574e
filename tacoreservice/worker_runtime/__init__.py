"""Worker processes: the worker loop and the local supervisor that keeps WORKER_COUNT alive."""
