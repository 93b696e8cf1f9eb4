"""Finding the models to search: walk a base model's tree on the Hub (walk.py) and turn it into
search candidates with their endpoints (candidates.py)."""
