"""Figures: functions that take arrays (from npcnn.features / npcnn.attribution) and return matplotlib
Figures. No math here beyond display scaling; nothing here is imported by the computing modules."""
from .features import *  # noqa: F401,F403  (npcnn.features figures)
from .attribution import *  # noqa: F401,F403  (npcnn.attribution figures)
