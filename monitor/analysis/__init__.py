"""Analysis: text scoring, rollups, windows, trends and change points over the store."""
