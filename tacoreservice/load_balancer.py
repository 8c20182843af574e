"""``python -m tacoreservice.load_balancer``: the broker alone; workers connect from elsewhere."""

import sys

from tacoreservice.service_runner import service_entry_point

if __name__ == "__main__":
    sys.exit(service_entry_point(with_workers=False))
