"""ecs package."""
