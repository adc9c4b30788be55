"""Model families: one file each. A family owns its networks and objective."""
