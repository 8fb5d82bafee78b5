"""The analysis' choices and defaults that its commands offer: named here, light to import, so
that ``relex --help`` (which loads every command's arguments) need not load the analysis."""

BUDGETS = ("equal", "finished")  # how trials stopped early by ASHA enter the effects
TOP_CURVES = 6  # learning curves the report draws by default
