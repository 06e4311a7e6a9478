"""Evidence: the inventory, explanations, framework reports, and the journal made checkable
by an auditor alone (exports, signed checkpoints). Reads the store and the targets; changes
nothing in either."""
