"""content-tagger: validate, de-duplicate, classify and route a live stream of ML content."""

APPROVED_TAGS: tuple[str, ...] = ("natural-language-processing", "computer-vision", "mlops", "other")
"""The only tags the service may emit, in the order used by every model and metric."""
