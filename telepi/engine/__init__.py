"""The clone engine: plan what to copy, lease it, copy it, publish it in order."""
