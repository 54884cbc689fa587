"""``python -m vtg_rl.report runs/demo``: REPORT.md, report.json, the viewer pages and index.html."""

import logging
import sys

from vtg_rl.report import demo_stages, gains, write_report
from vtg_rl.report.index import write_index, write_views

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    root = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    stages = demo_stages()
    print(write_report(root, stages))
    print(write_index(root, stages, gains(root, stages), write_views(root, stages)))
