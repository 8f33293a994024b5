"""(placeholder: filled in by its owner)"""

WORKFLOWS: list[type] = []
