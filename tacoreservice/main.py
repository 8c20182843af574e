"""``python -m tacoreservice.main``: everything on one host (the embedded default).

Broker on ZMQ_FRONTEND_PORT / ZMQ_BACKEND_PORT plus WORKER_COUNT supervised local workers.
"""

import sys

from tacoreservice.service_runner import service_entry_point

if __name__ == "__main__":
    sys.exit(service_entry_point(with_workers=True))
