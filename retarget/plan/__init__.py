"""Recipes (formats per tensor group, lowering) and the planner that picks one for a model and a device."""

from retarget.plan.recipe import Recipe, plan_recipe

__all__ = ["Recipe", "plan_recipe"]
