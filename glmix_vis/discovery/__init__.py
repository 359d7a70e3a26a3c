"""Object discovery and concepts from GLMix's slots: slot quality per block (FG-ARI, mBO, CorLoc,
as OCLF defines them) and the slot atlas (slots grouped into concepts across a dataset).

Library modules: they import neither the app nor the CLI.
"""
