"""Developer tools: fitting the synthetic tree presets to the published figures."""
