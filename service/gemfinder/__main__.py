import sys

from gemfinder.cli import main

sys.exit(main())
