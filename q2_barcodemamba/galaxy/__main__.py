"""python -m q2_barcodemamba.galaxy --output-dir DIR [--test-data]"""
import sys

from . import main

sys.exit(main())
