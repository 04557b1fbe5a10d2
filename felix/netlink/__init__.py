"""Fast rtnetlink route programming (hand-packed, batched) and netns helpers."""
