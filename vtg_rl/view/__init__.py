"""`vtg-rl view`: one self-contained HTML page to browse a dataset with its predictions.

The page embeds the data once as JSON and draws only the current page of samples, so a 10,000-sample
dataset stays responsive. See docs/viewer.md.
"""

from vtg_rl.view.page import build_page, collect_view_data, write_view

__all__ = ["build_page", "collect_view_data", "write_view"]
