"""Start the rrm-ui web app: ``python app.py [rrm-ui serve options]`` (see ``rrm-ui serve --help``)."""

import sys

from rrm_ui.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
