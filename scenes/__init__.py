"""Example scene files (package data, so ``pytti demo`` finds them in any install)."""
