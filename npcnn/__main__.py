"""python -m npcnn: the same as the npcnn command."""
import sys

from .cli import main

sys.exit(main())
