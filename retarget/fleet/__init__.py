"""Sovereignty and cost: which open model to run on which hardware a buyer can get, at what price, energy and
lock-in (plans.py), and the model-origin x hardware-bloc view (blocs.py). Facts live in data/*.yaml."""
