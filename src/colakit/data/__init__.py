"""Data: named calibration sources and user specs (``sources``), the evaluation sets
(``evalsets``), and contamination checks between them (``overlap``)."""
