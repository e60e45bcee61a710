"""One controller per resource; tags per audience (pos, integrations, web, health)."""
