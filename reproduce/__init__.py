"""The paper: assets, data, protocol, training, tables and explanations (uses ``converters``)."""
