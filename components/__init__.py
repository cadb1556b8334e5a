"""Stage logic (plain typed functions) and thin KFP v2 component definitions."""
